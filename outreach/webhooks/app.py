"""The webhook server (Starlette under uvicorn): one module per source.

    links.py   /u (unsubscribe), /o (open pixel), /c (click redirect), /s (survey answers)
    preferences.py  /p (the preference page), /r (double opt-in confirmation links)
    orders.py  /webhooks/orders (the shop, HMAC-signed JSON)
    events.py  /webhooks/events (custom events, signed like orders)
    twilio.py  /webhooks/twilio/inbound (STOP replies), /webhooks/twilio/status
    aliyun.py  /webhooks/aliyun/{secret}/report, …/reply (Aliyun SMS pushes)
    tencent.py /webhooks/tencent/{secret}/report, …/reply (Tencent Cloud SMS callbacks)
    esp/       /webhooks/esp/{ses,sendgrid,mailgun,postmark} (bounces, complaints, …)

Every endpoint runs the same pipeline: verify (constant-time signature or
token check) → parse into normalized events → store idempotently → act.
A bad signature is a 4xx and stores nothing; a failure the sender should
retry (database down) is a 5xx.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outreach import logs, metrics
from outreach.clock import utcnow
from outreach.config import Settings, load_settings
from outreach.sending.exposition import OutboxCollector
from outreach.store import optouts
from outreach.webhooks import aliyun, esp, events, links, openapi, orders, preferences, tencent, twilio

log = logs.get_logger("outreach.webhooks")

#: Each source contributes its routes: (settings, engine, clock) → routes.
SOURCES = (links.routes, preferences.routes, orders.routes, events.routes, twilio.routes, aliyun.routes,
           tencent.routes, esp.routes)


def create_app(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    registry = CollectorRegistry()
    registry.register(OutboxCollector(settings, engine))

    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await run_in_threadpool(ping)
        return JSONResponse({"ok": True})

    async def prometheus(request: Request) -> Response:
        """The webhook server's figures and the outbox's depth (Prometheus text format)."""
        body = await run_in_threadpool(lambda: generate_latest(REGISTRY) + generate_latest(registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def description(request: Request) -> Response:
        return JSONResponse(openapi.describe())

    routes = [Route("/healthz", healthz), Route("/metrics", prometheus), Route("/openapi.json", description)]
    for source in SOURCES:
        routes += source(settings, engine, clock)
    return Starlette(routes=routes, middleware=[Middleware(Measured)], lifespan=_applying_optouts(engine))


#: How often the server applies opt-outs left in the inbox by a busy database.
OPTOUT_DRAIN_INTERVAL_S = 1.0


def _applying_optouts(engine: Engine) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """While the server runs, opt-outs an embedded database was too busy
    for are applied as soon as it is free (``outreach.store.optouts``)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stopping = threading.Event()

        def drain_until_stopped() -> None:
            while not stopping.wait(OPTOUT_DRAIN_INTERVAL_S):
                try:
                    optouts.drain(engine)
                except Exception:
                    log.exception("applying the opt-out inbox failed; trying again")

        drainer = threading.Thread(target=drain_until_stopped, name="outreach-optouts", daemon=True)
        if optouts.inbox_for(engine) is not None:
            await run_in_threadpool(optouts.drain, engine)  # what arrived while no server ran
            drainer.start()
        try:
            yield
        finally:
            stopping.set()

    return lifespan


class Measured:
    """Count and time every request by route (its path pattern, never a token).

    Plain ASGI (not ``BaseHTTPMiddleware``, which runs each request in a
    task group of its own): it only reads the status as the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what the server answers when the app raises before starting a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            metrics.WEBHOOK_REQUESTS.labels(name, str(status)).inc()
            metrics.WEBHOOK_SECONDS.labels(name).observe(time.monotonic() - started)


def from_environment() -> Starlette:
    """The app of one ``outreach serve --workers N`` process: settings from
    the environment (the command passed its options there), an engine of its own."""
    from outreach.store.engine import make_engine

    settings = load_settings()
    logs.configure(level=settings.log_level or "info", fmt=settings.log_format)
    return create_app(settings, make_engine(settings.database_url))


#: Seconds a server process may take to answer uvicorn's health check (startup included) before
#: it is killed and replaced: uvicorn's 5 s default restarted processes still importing on a busy
#: machine, over and over (seen under the webhook bench with other work on both cores).
WORKER_HEALTHCHECK_S = 60


def serve(settings: Settings, engine: Engine, *, host: str, port: int, workers: int = 1,
          access_log: bool = False) -> None:
    """uvicorn with its fastest loop and parser installed (uvloop, httptools);
    with ``workers`` > 1, that many processes share the port."""
    import uvicorn

    settings.require_secret()
    # log_config=None: uvicorn's records go through Outreach's logging (outreach.logs).
    options: dict[str, Any] = {"host": host, "port": port, "log_config": None, "access_log": access_log}
    if workers <= 1:
        uvicorn.run(create_app(settings, engine), **options)
        return
    engine.dispose()
    uvicorn.run("outreach.webhooks.app:from_environment", factory=True, workers=workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, **options)

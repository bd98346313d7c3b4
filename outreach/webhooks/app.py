"""The webhook server (Starlette under uvicorn): one module per source.

    links.py   /u (unsubscribe), /o (open pixel), /c (click redirect)
    orders.py  /webhooks/orders (the shop, HMAC-signed JSON)
    events.py  /webhooks/events (custom events, signed like orders)
    twilio.py  /webhooks/twilio/inbound (STOP replies), /webhooks/twilio/status
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

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach import logs, metrics
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.sending.exposition import OutboxCollector
from outreach.store import optouts
from outreach.webhooks import esp, events, links, openapi, orders, twilio

log = logs.get_logger("outreach.webhooks")

#: Each source contributes its routes: (settings, engine, clock) → routes.
SOURCES = (links.routes, orders.routes, events.routes, twilio.routes, esp.routes)


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


class Measured(BaseHTTPMiddleware):
    """Count and time every request by route (its path pattern, never a token)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.monotonic()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.WEBHOOK_REQUESTS.labels(name, str(response.status_code)).inc()
        metrics.WEBHOOK_SECONDS.labels(name).observe(time.monotonic() - started)
        return response


def serve(settings: Settings, engine: Engine, *, host: str, port: int) -> None:
    import uvicorn

    settings.require_secret()
    # log_config=None: uvicorn's records go through Outreach's logging (outreach.logs).
    uvicorn.run(create_app(settings, engine), host=host, port=port, log_config=None)

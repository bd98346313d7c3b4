"""The webhook server (Starlette under uvicorn): one module per source.

    links.py   /u (unsubscribe), /o (open pixel), /c (click redirect)
    orders.py  /webhooks/orders (the shop, HMAC-signed JSON)
    twilio.py  /webhooks/twilio/inbound (STOP replies), /webhooks/twilio/status
    esp/       /webhooks/esp/{ses,sendgrid,mailgun,postmark} (bounces, complaints, …)

Every endpoint runs the same pipeline: verify (constant-time signature or
token check) → parse into normalized events → store idempotently → act.
A bad signature is a 4xx and stores nothing; a failure the sender should
retry (database down) is a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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

from outreach import metrics
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.sending.exposition import OutboxCollector
from outreach.webhooks import esp, links, orders, twilio

#: Each source contributes its routes: (settings, engine, clock) → routes.
SOURCES = (links.routes, orders.routes, twilio.routes, esp.routes)


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

    routes = [Route("/healthz", healthz), Route("/metrics", prometheus)]
    for source in SOURCES:
        routes += source(settings, engine, clock)
    return Starlette(routes=routes, middleware=[Middleware(Measured)])


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

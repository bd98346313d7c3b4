"""The webhook server (Starlette under uvicorn): one module per source.

    links.py   /u (unsubscribe), /o (open pixel), /c (click redirect)
    orders.py  /webhooks/orders (the shop, HMAC-signed JSON)
    twilio.py  /webhooks/twilio/inbound (STOP replies), /webhooks/twilio/status

Every endpoint runs the same pipeline: verify (constant-time signature or
token check) → parse into normalized events → store idempotently → act.
A bad signature is a 4xx and stores nothing; a failure the sender should
retry (database down) is a 5xx.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.clock import utcnow
from outreach.config import Settings
from outreach.webhooks import links, orders, twilio

#: Each source contributes its routes: (settings, engine, clock) → routes.
SOURCES = (links.routes, orders.routes, twilio.routes)


def create_app(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await run_in_threadpool(ping)
        return JSONResponse({"ok": True})

    routes = [Route("/healthz", healthz)]
    for source in SOURCES:
        routes += source(settings, engine, clock)
    return Starlette(routes=routes)


def serve(settings: Settings, engine: Engine, *, host: str, port: int) -> None:
    import uvicorn

    settings.require_secret()
    # log_config=None: uvicorn's records go through Outreach's logging (outreach.logs).
    uvicorn.run(create_app(settings, engine), host=host, port=port, log_config=None)

"""The reference of bench/webhook_bench.py: a hello-world Starlette app.

Every path answers "hello, world"; /healthz answers as Outreach's does (the
wrk script tells its fill-in requests apart by that body).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello, world")


app = Starlette(routes=[Route("/healthz", healthz), Route("/{path:path}", hello, methods=["GET", "POST"])])

"""The webhook server (Starlette under uvicorn).

Every endpoint runs the same pipeline: verify (constant-time signature or
token check) → parse into normalized events → store idempotently → act.
A bad signature is a 4xx and stores nothing; a failure the sender should
retry (database down) is a 5xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from outreach.store import responses
from outreach.sending import tokens
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.store.engine import transaction
from outreach.errors import PayloadError
from outreach.store.models import Customer, EventType, Message
from outreach.webhooks import pages

#: A transparent 1×1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: SMS replies that mean "stop" (Twilio's standard keywords, and the Chinese 退订 / TD).
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "TD", "退订"}
#: Twilio MessageStatus → our vocabulary; unknown values become UNKNOWN, never a crash.
TWILIO_STATUS = {
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.BOUNCE,
    "failed": EventType.FAILED,
    "read": EventType.OPEN,
}
TWILIO_IGNORED = {"accepted", "scheduled", "queued", "sending", "sent", "receiving", "received"}
ORDER_SIGNATURE_HEADER = "X-Outreach-Signature"


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + sorted k+v))."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def order_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def create_app(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    def locale_of(message_id: int) -> tuple[str | None, str, str]:
        with transaction(engine) as session:
            row = session.execute(
                select(Customer.locale, Message.channel, Message.to_address)
                .join(Customer, Customer.id == Message.customer_id)
                .where(Message.id == message_id)
            ).first()
        if row is None:
            raise tokens.BadToken("unknown message")
        return row[0], row[1].value, row[2] or ""

    async def unsubscribe(request: Request) -> Response:
        try:
            message_id = tokens.read_unsubscribe_token(settings, request.path_params["token"])
            locale, channel, address = await run_in_threadpool(locale_of, message_id)
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)
        if request.method == "GET":
            # Mail scanners follow links: GET only asks, it never unsubscribes.
            return HTMLResponse(pages.confirm(locale=locale, channel=channel, address=address))

        def act() -> None:
            with transaction(engine) as session:
                responses.unsubscribe(session, message_id=message_id, occurred_at=clock(),
                                      source="unsubscribe-link")

        await run_in_threadpool(act)
        return HTMLResponse(pages.done(locale=locale, channel=channel, address=address))

    async def open_pixel(request: Request) -> Response:
        headers = {"Cache-Control": "no-store, max-age=0"}
        try:
            message_id = tokens.read_open_token(settings, request.path_params["token"])
        except tokens.BadToken:
            return Response(PIXEL, media_type="image/gif", headers=headers)

        def act() -> None:
            with transaction(engine) as session:
                if session.get(Message, message_id) is not None:
                    responses.record_event(session, type=EventType.OPEN, occurred_at=clock(),
                                           source="pixel", message_id=message_id,
                                           payload={"user_agent": request.headers.get("user-agent", "")})

        await run_in_threadpool(act)
        return Response(PIXEL, media_type="image/gif", headers=headers)

    async def click(request: Request) -> Response:
        try:
            message_id, url = tokens.read_click_token(settings, request.path_params["token"])
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)

        def act() -> None:
            with transaction(engine) as session:
                if session.get(Message, message_id) is not None:
                    responses.record_event(session, type=EventType.CLICK, occurred_at=clock(),
                                           source="redirect", message_id=message_id, url=url)

        await run_in_threadpool(act)
        return RedirectResponse(url, status_code=302)

    async def orders(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get(ORDER_SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given, order_signature(settings.require_order_secret(), body)):
            return JSONResponse({"error": f"missing or wrong {ORDER_SIGNATURE_HEADER}",
                                 "hint": "sign the raw body: sha256=<hex HMAC-SHA256 with the order secret>"},
                                status_code=401)
        try:
            order = responses.OrderIn.model_validate(json.loads(body))
        except json.JSONDecodeError as exc:
            return JSONResponse({"errors": [{"field": "(body)", "message": f"not JSON: {exc}"}]}, status_code=422)
        except ValidationError as exc:
            return JSONResponse({"errors": [{"field": ".".join(str(p) for p in e["loc"]) or "(body)",
                                             "message": e["msg"]} for e in exc.errors()]}, status_code=422)

        def act() -> dict[str, Any]:
            with transaction(engine) as session:
                row = responses.record_order(session, order, source="webhook")
                return {"order_id": row.id, "external_id": row.external_id}

        try:
            return JSONResponse(await run_in_threadpool(act))
        except PayloadError as exc:
            p = exc.problems[0]
            return JSONResponse({"errors": [{"field": p.field, "message": p.message, "hint": p.hint}]},
                                status_code=422)

    async def twilio_form(request: Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.form()).items()}
        token = settings.require("twilio_auth_token")
        url = settings.public_url.rstrip("/") + request.url.path
        expected = twilio_signature(token, url, form)
        if not hmac.compare_digest(request.headers.get("X-Twilio-Signature", ""), expected):
            return None
        return form

    async def twilio_inbound(request: Request) -> Response:
        form = await twilio_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        body, phone = form.get("Body", "").strip(), form.get("From", "")

        def act() -> None:
            with transaction(engine) as session:
                sid = form.get("MessageSid")
                if body.upper() in STOP_WORDS:
                    responses.stop_sms(session, phone=phone, occurred_at=clock(), source="twilio",
                                       payload=form, dedupe_key=f"twilio:{sid}" if sid else None)
                else:
                    customer_id = session.scalar(select(Customer.id).where(Customer.phone == phone))
                    responses.record_event(session, type=EventType.REPLY, occurred_at=clock(), source="twilio",
                                           customer_id=customer_id, payload=form,
                                           dedupe_key=f"twilio:{sid}" if sid else None)

        await run_in_threadpool(act)
        return Response("<Response></Response>", media_type="text/xml")

    async def twilio_status(request: Request) -> Response:
        form = await twilio_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        status, sid = form.get("MessageStatus", "").lower(), form.get("MessageSid", "")
        if status in TWILIO_IGNORED:
            return Response(status_code=204)
        kind = TWILIO_STATUS.get(status, EventType.UNKNOWN)

        def act() -> None:
            with transaction(engine) as session:
                message_id = session.scalar(select(Message.id).where(Message.provider_id == sid))
                responses.record_event(session, type=kind, occurred_at=clock(), source="twilio",
                                       message_id=message_id, payload=form,
                                       dedupe_key=f"twilio:{sid}:{status}")

        await run_in_threadpool(act)
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await run_in_threadpool(ping)
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/o/{token}", open_pixel),
        Route("/c/{token}", click),
        Route("/webhooks/orders", orders, methods=["POST"]),
        Route("/webhooks/twilio/inbound", twilio_inbound, methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
    ])


def serve(settings: Settings, engine: Engine, *, host: str, port: int) -> None:
    import uvicorn

    settings.require_secret()
    uvicorn.run(create_app(settings, engine), host=host, port=port, log_level="info")

"""Twilio's webhooks: incoming SMS (STOP replies) and delivery status callbacks.

Every request is verified with Twilio's signature (``X-Twilio-Signature``:
HMAC-SHA1 of the URL and the sorted form fields with the auth token); a bad
one is a 403 and stores nothing. Statuses are mapped to the normalized event
vocabulary through a table; a status we do not know becomes UNKNOWN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import EventType
from outreach.store import responses
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message

INBOUND_PATH = "/webhooks/twilio/inbound"
STATUS_PATH = "/webhooks/twilio/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
#: SMS replies that mean "stop" (Twilio's standard keywords, and the Chinese 退订 / TD).
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "TD", "退订"}
#: Twilio MessageStatus → our vocabulary; unknown values become UNKNOWN, never a crash.
STATUS_EVENTS = {
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.BOUNCE,
    "failed": EventType.FAILED,
    "read": EventType.OPEN,
}
#: Intermediate statuses: acknowledged, not stored.
IGNORED_STATUSES = {"accepted", "scheduled", "queued", "sending", "sent", "receiving", "received"}
#: What Twilio expects back from an incoming-message webhook: no reply.
EMPTY_TWIML = "<Response></Response>"


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + sorted k+v))."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    async def verified_form(request: Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.form()).items()}
        token = settings.require("twilio_auth_token")
        url = settings.public_url.rstrip("/") + request.url.path
        expected = twilio_signature(token, url, form)
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            return None
        return form

    async def inbound(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        body, phone = form.get("Body", "").strip(), form.get("From", "")

        def act() -> None:
            with transaction(engine) as session:
                sid = form.get("MessageSid")
                dedupe = f"twilio:{sid}" if sid else None
                if body.upper() in STOP_WORDS:
                    responses.stop_sms(session, phone=phone, occurred_at=clock(), source="twilio",
                                       payload=form, dedupe_key=dedupe)
                else:
                    customer_id = session.scalar(select(Customer.id).where(Customer.phone == phone))
                    responses.record_event(session, type=EventType.REPLY, occurred_at=clock(), source="twilio",
                                           customer_id=customer_id, payload=form, dedupe_key=dedupe)

        await run_in_threadpool(act)
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        state, sid = form.get("MessageStatus", "").lower(), form.get("MessageSid", "")
        if state in IGNORED_STATUSES:
            return Response(status_code=204)
        kind = STATUS_EVENTS.get(state, EventType.UNKNOWN)

        def act() -> None:
            with transaction(engine) as session:
                message_id = session.scalar(select(Message.id).where(Message.provider_id == sid))
                responses.record_event(session, type=kind, occurred_at=clock(), source="twilio",
                                       message_id=message_id, payload=form, dedupe_key=f"twilio:{sid}:{state}")

        await run_in_threadpool(act)
        return Response(status_code=204)

    return [Route(INBOUND_PATH, inbound, methods=["POST"]), Route(STATUS_PATH, status, methods=["POST"])]

"""Twilio's webhooks: incoming SMS (STOP replies) and delivery status callbacks.

Every request is verified with Twilio's signature (``X-Twilio-Signature``:
HMAC-SHA1 of the full URL — query string included — and the sorted form
fields with the auth token); a bad one is a 403 and stores nothing. The
routes exist only with ``twilio_auth_token`` set, and ``sms_transport =
"twilio"`` without it stops ``serve`` at start.

Replies (:mod:`.sms_replies`): STOP words opt out (consent revoked, number
suppressed), START words opt back in (consent granted with the reply as
evidence, the customer's own opt-out suppression lifted: a STOP, or SMS
turned off on the preference page), HELP words get an answer saying both. Statuses are
mapped to the normalized event vocabulary through a table; a status we do
not know becomes UNKNOWN; error 21610 (the number opted out at the carrier)
counts as a STOP. A signed request without the fields it needs is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from html import escape

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import Channel, EventType
from outreach.errors import ConfigError
from outreach.store import optouts, responses
from outreach.store.engine import transaction
from outreach.store.models import Message
from outreach.webhooks.sms_replies import act_on_reply

INBOUND_PATH = "/webhooks/twilio/inbound"
STATUS_PATH = "/webhooks/twilio/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
#: Twilio MessageStatus → our vocabulary; unknown values become UNKNOWN, never a crash.
STATUS_EVENTS = {
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.BOUNCE,
    "failed": EventType.FAILED,
    "read": EventType.OPEN,
}
#: Twilio error: "Attempt to send to unsubscribed recipient" — the carrier says the number opted out.
OPTED_OUT_ERROR = "21610"
#: Intermediate statuses: acknowledged, not stored.
IGNORED_STATUSES = {"accepted", "scheduled", "queued", "sending", "sent", "receiving", "received"}
#: What Twilio expects back from an incoming-message webhook: no reply.
EMPTY_TWIML = "<Response></Response>"


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + sorted k+v))."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def _twiml(text: str | None) -> Response:
    body = f"<Response><Message>{escape(text)}</Message></Response>" if text else EMPTY_TWIML
    return Response(body, media_type="text/xml")


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    if settings.twilio_auth_token is None:
        if settings.sms_transport == "twilio":
            raise ConfigError("sms_transport is 'twilio' but twilio_auth_token is not set: Twilio's webhooks "
                              "could not be verified (set OUTREACH_TWILIO_AUTH_TOKEN)")
        return []  # no Twilio account: no Twilio webhooks
    token = settings.twilio_auth_token.get_secret_value()

    async def verified_form(request: Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = settings.public_url.rstrip("/") + request.url.path
        if request.url.query:  # Twilio signs the URL it was given, query string included
            url += "?" + request.url.query
        expected = twilio_signature(token, url, form)
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            return None
        return form

    def unstorable(form: dict[str, str]) -> Response | None:
        """A 400 for a field no database can store (NUL: PostgreSQL refuses it in text)."""
        bad = sorted(name for name, value in form.items() if "\x00" in name or "\x00" in value)
        if bad:
            return Response(f"field '{bad[0][:64]!s}' holds a NUL character", status_code=400)
        return None

    async def inbound(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        if refused := unstorable(form):
            return refused
        body, phone = form.get("Body", "").strip(), form.get("From", "").strip()
        if not phone:
            return Response("field 'From' is missing: the sender's number is required", status_code=400)
        sid = form.get("MessageSid")

        def act() -> str | None:
            return act_on_reply(engine, phone=phone, text=body, source="twilio", payload=form,
                                dedupe_key=f"twilio:{sid}" if sid else None, at=clock())

        return _twiml(await run_in_threadpool(act))

    async def status(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("invalid signature", status_code=403)
        if refused := unstorable(form):
            return refused
        state, sid = form.get("MessageStatus", "").lower(), form.get("MessageSid", "").strip()
        if not sid:
            return Response("field 'MessageSid' is missing: the message's id is required", status_code=400)
        opted_out = form.get("ErrorCode", "").strip() == OPTED_OUT_ERROR
        if state in IGNORED_STATUSES and not opted_out:
            return Response(status_code=204)
        kind = STATUS_EVENTS.get(state, EventType.UNKNOWN)

        def act() -> None:
            with transaction(engine) as session:
                message = session.execute(select(Message.id, Message.to_address)
                                          .where(Message.provider_id == sid)).first()
            phone = (message[1] if message else None) or form.get("To", "").strip()
            if opted_out and phone:  # the carrier's opt-out is as good as a STOP reply
                optouts.submit(engine, optouts.OptOut(
                    kind="stop_sms", channel=Channel.SMS, address=phone, received_at=clock(), source="twilio",
                    payload=form, dedupe_key=f"twilio:{sid}:opted-out"))
            with transaction(engine) as session:
                responses.record_event(session, type=kind, occurred_at=clock(), source="twilio",
                                       message_id=message[0] if message else None, payload=form,
                                       dedupe_key=f"twilio:{sid}:{state}")

        await run_in_threadpool(act)
        return Response(status_code=204)

    return [Route(INBOUND_PATH, inbound, methods=["POST"]), Route(STATUS_PATH, status, methods=["POST"])]

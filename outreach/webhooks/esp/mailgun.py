"""Mailgun's webhooks: ``POST /webhooks/esp/mailgun``.

Each delivery is JSON ``{"signature": {timestamp, token, signature},
"event-data": {...}}``; the signature is the hex HMAC-SHA256 of
``timestamp + token`` with ``mailgun_webhook_signing_key`` (the route exists
only with it set). The signature does not cover the body, so a token is
accepted once: a delivery with a used token is a replay, answered 406 (which
tells Mailgun not to retry) and stores nothing. ``failed`` events are hard
or soft bounces by their ``severity`` (a permanent one Mailgun did not even
try, ``reason: suppress-*``, is what its list says: bounce, complaint or
unsubscribe); our message is found by the
``outreach_message_id`` user variable or ``message.headers.message-id``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import EventType
from outreach.store.feedback import FeedEvent
from outreach.webhooks.esp.base import feed_route, obj, parse_json, refuse, text, unix_time

PATH = "/webhooks/esp/mailgun"
SOURCE = "mailgun"
#: Mailgun's ``event`` → ours; unknown → UNKNOWN.
EVENTS = {
    "accepted": None,
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCE,
    "rejected": EventType.FAILED,
    "opened": EventType.OPEN,
    "clicked": EventType.CLICK,
    "unsubscribed": EventType.UNSUBSCRIBE,
    "complained": EventType.COMPLAINT,
}
#: A ``failed`` event's ``severity``: temporary failures are soft bounces.
SEVERITY = {"permanent": EventType.BOUNCE, "temporary": EventType.SOFT_BOUNCE}
#: A permanent failure's ``reason`` when Mailgun did not even try: the address
#: is on its own list (Mailgun's "permanent_fail" test sample is ``suppress-bounce``).
SUPPRESSED = {"suppress-bounce": EventType.BOUNCE, "suppress-complaint": EventType.COMPLAINT,
              "suppress-unsubscribe": EventType.UNSUBSCRIBE}
USER_VARIABLE = "outreach_message_id"
HINT = 'post Mailgun\'s webhook JSON: {"signature": {...}, "event-data": {...}}'


def signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's signature: hex HMAC-SHA256 of timestamp + token."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def parse(data: Any) -> list[FeedEvent]:
    event = obj(obj(data, "(body)").get("event-data"), "event-data")
    name = text(event, "event", "event-data") or ""
    kind = EVENTS.get(name, EventType.UNKNOWN)
    if kind is None:
        return []
    if name == "failed":
        kind = SEVERITY.get(str(event.get("severity", "permanent")), EventType.BOUNCE)
        if kind is EventType.BOUNCE:
            kind = SUPPRESSED.get(str(event.get("reason")), kind)
    message = obj(event.get("message") or {}, "event-data.message")
    headers = obj(message.get("headers") or {}, "event-data.message.headers")
    ref = text(headers, "message-id", "event-data.message.headers", required=False)
    variables = obj(event.get("user-variables") or {}, "event-data.user-variables")
    return [FeedEvent(
        type=kind, source=SOURCE, event_id=_event_id(data, event),
        occurred_at=unix_time(event.get("timestamp"), "event-data.timestamp"),
        recipient=text(event, "recipient", "event-data", required=False),
        references=(f"<{ref.strip('<>')}>",) if ref else (),
        outreach_id=text(variables, USER_VARIABLE, "event-data.user-variables", required=False),
        url=text(event, "url", "event-data", required=False), payload=obj(data, "(body)"))]


def _event_id(data: Any, event: dict[str, Any]) -> str:
    """``event-data.id``; an event without one (Mailgun's older payloads) is
    known by its delivery's one-time token, as django-anymail does."""
    given = text(event, "id", "event-data", required=False)
    if given:
        return given
    signed = obj(obj(data, "(body)").get("signature"), "signature")
    return f"token:{text(signed, 'token', 'signature')}"


def token(data: Any) -> str | None:
    return str(data["signature"]["token"])


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    if settings.mailgun_webhook_signing_key is None:
        return []
    key = settings.mailgun_webhook_signing_key.get_secret_value()

    async def verify(request: Request, body: bytes) -> Response | None:
        forbidden = refuse(403, "missing or wrong signature",
                           "Mailgun signs timestamp + token with the webhook signing key "
                           "(mailgun_webhook_signing_key)")
        try:
            signed = obj(obj(parse_json(body), "(body)").get("signature"), "signature")
        except ValueError:
            return forbidden
        stamp, once, given = (str(signed.get(k, "")) for k in ("timestamp", "token", "signature"))
        if not stamp or not once or len(once) > 128 or not hmac.compare_digest(given, signature(key, stamp, once)):
            return forbidden
        return None

    return [feed_route(PATH, source=SOURCE, verify=verify, parse=parse, engine=engine, settings=settings,
                       clock=clock, hint=HINT, token=token)]

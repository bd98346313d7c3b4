"""SendGrid's Event Webhook, signed: ``POST /webhooks/esp/sendgrid``.

SendGrid signs each delivery with ECDSA P-256 over ``timestamp + body``
(``X-Twilio-Email-Event-Webhook-Timestamp`` and ``-Signature``, base64 DER);
the verification key from SendGrid's settings page is
``sendgrid_webhook_public_key``, and the route exists only with it set. A
delivery is a JSON array of events; each ``sg_event_id`` is stored once.
Our message is found by the ``outreach_message_id`` custom arg, the
``smtp-id`` (our Message-ID) or ``sg_message_id``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import EventType
from outreach.errors import ConfigError
from outreach.store.feedback import FeedEvent
from outreach.webhooks.esp.base import BadPayload, feed_route, obj, refuse, text, unix_time

PATH = "/webhooks/esp/sendgrid"
SOURCE = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: SendGrid's ``event`` → ours; ``None``: acknowledged, not stored; unknown → UNKNOWN.
EVENTS: dict[str, EventType | None] = {
    "processed": None,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCE,
    "dropped": EventType.FAILED,
    "open": EventType.OPEN,
    "click": EventType.CLICK,
    "spamreport": EventType.COMPLAINT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.UNSUBSCRIBE,
}
#: A ``bounce`` of ``type: blocked`` is temporary (the receiver refused for now).
BOUNCE_TYPES = {"bounce": EventType.BOUNCE, "blocked": EventType.SOFT_BOUNCE}
#: The custom arg (``unique_args`` in X-SMTPAPI) carrying our outbox id.
CUSTOM_ARG = "outreach_message_id"
HINT = "post SendGrid's Event Webhook JSON: an array of event objects"


def public_key(text_key: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or as PEM."""
    try:
        if "BEGIN PUBLIC KEY" in text_key:
            key = serialization.load_pem_public_key(text_key.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text_key.strip(), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(f"sendgrid_webhook_public_key is not a public key ({exc}): paste the "
                          "'Verification Key' of SendGrid's Signed Event Webhook") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("sendgrid_webhook_public_key is not an ECDSA key: paste SendGrid's Verification Key")
    return key


def parse(data: Any) -> list[FeedEvent]:
    if not isinstance(data, list):
        raise BadPayload("(body)", f"expected a JSON array of events, got {type(data).__name__}")
    events: list[FeedEvent] = []
    for index, item in enumerate(data):
        where = f"[{index}]"
        event = obj(item, where)
        name = text(event, "event", where) or ""
        kind = EVENTS.get(name, EventType.UNKNOWN)
        if kind is None:
            continue
        if kind is EventType.BOUNCE:
            kind = BOUNCE_TYPES.get(str(event.get("type", "bounce")), EventType.BOUNCE)
        refs = tuple(r for key in ("smtp-id", "sg_message_id") if (r := text(event, key, where, required=False)))
        events.append(FeedEvent(
            type=kind, source=SOURCE, event_id=text(event, "sg_event_id", where) or "",
            occurred_at=unix_time(event.get("timestamp"), f"{where}.timestamp"),
            recipient=text(event, "email", where, required=False), references=refs,
            outreach_id=text(event, CUSTOM_ARG, where, required=False),
            url=text(event, "url", where, required=False), payload=event))
    return events


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    if not settings.sendgrid_webhook_public_key:
        return []
    key = public_key(settings.sendgrid_webhook_public_key)

    async def verify(request: Request, body: bytes) -> Response | None:
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        try:
            signature = base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True)
            key.verify(signature, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            return refuse(403, f"missing or wrong {SIGNATURE_HEADER}",
                          "SendGrid signs timestamp + body with the key whose public half is "
                          "sendgrid_webhook_public_key")
        return None

    return [feed_route(PATH, source=SOURCE, verify=verify, parse=parse, engine=engine, settings=settings,
                       clock=clock, hint=HINT)]

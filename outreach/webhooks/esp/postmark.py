"""Postmark's webhooks: ``POST /webhooks/esp/postmark``, behind HTTP basic auth.

Postmark calls the URL with the user and password written into it
(``https://postmark:<password>@shop.example/webhooks/esp/postmark``); the
password is ``postmark_webhook_password`` (the route exists only with it
set) and both are compared in constant time. One event per delivery,
``RecordType`` mapped through a table (a ``Bounce`` further by its
``Type``, a ``SubscriptionChange`` by its ``SuppressionReason``; an event
without a time is dated on arrival). Postmark replaces our Message-ID, so
our message is found by the ``outreach_message_id`` metadata (the header
``X-PM-Metadata-outreach_message_id`` every email carries, returned as
``Metadata``), Postmark's ``MessageID`` stored as the message's provider id,
or else the address.
"""

from __future__ import annotations

import base64
import binascii
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
from outreach.webhooks.esp.base import feed_route, iso_time, obj, refuse, text

PATH = "/webhooks/esp/postmark"
SOURCE = "postmark"
#: ``RecordType`` → ours (Bounce: see BOUNCE_TYPES); unknown → UNKNOWN.
RECORD_TYPES = {
    "Delivery": EventType.DELIVERED,
    "Open": EventType.OPEN,
    "Click": EventType.CLICK,
    "SpamComplaint": EventType.COMPLAINT,
    "SubscriptionChange": EventType.UNSUBSCRIBE,
}
#: A ``SubscriptionChange``'s ``SuppressionReason``: Postmark reports every
#: suppression this way (broadcast streams have no Bounce webhook), so its
#: documented sample is a hard bounce, not an unsubscribe.
SUPPRESSION_REASONS = {
    "HardBounce": EventType.BOUNCE,
    "SpamComplaint": EventType.COMPLAINT,
    "ManualSuppression": EventType.UNSUBSCRIBE,
}
#: A bounce's ``Type`` → ours (django-anymail's reading of Postmark's bounce types).
BOUNCE_TYPES = {
    "HardBounce": EventType.BOUNCE,
    "BadEmailAddress": EventType.BOUNCE,
    "ManuallyDeactivated": EventType.BOUNCE,
    "SoftBounce": EventType.SOFT_BOUNCE,
    "DnsError": EventType.SOFT_BOUNCE,
    "Blocked": EventType.SOFT_BOUNCE,
    "Transient": EventType.DEFERRED,
    "SpamComplaint": EventType.COMPLAINT,
    "SpamNotification": EventType.COMPLAINT,
    "Unsubscribe": EventType.UNSUBSCRIBE,
    "ManualSuppression": EventType.UNSUBSCRIBE,
}
#: Where each record type keeps its time.
TIME_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")
METADATA_KEY = "outreach_message_id"
HINT = "post Postmark's webhook JSON: one object with RecordType"


def parse(data: Any) -> list[FeedEvent]:
    event = obj(data, "(body)")
    record = text(event, "RecordType", "") or ""
    kind = RECORD_TYPES.get(record, EventType.UNKNOWN)
    if record == "Bounce":
        kind = BOUNCE_TYPES.get(str(event.get("Type")), EventType.UNKNOWN)
    if record == "SubscriptionChange":
        # A reactivation (SuppressSending false) is stored, never acted on.
        suppressed = event.get("SuppressSending") is True
        kind = SUPPRESSION_REASONS.get(str(event.get("SuppressionReason")), EventType.UNKNOWN) if suppressed \
            else EventType.UNKNOWN
    # Some bounces carry no time at all (a Type "Unsubscribe" bounce has none): dated on arrival.
    stamp = next((event[f] for f in TIME_FIELDS if event.get(f)), None)
    message_id = text(event, "MessageID", "")
    recipient = text(event, "Recipient", "", required=False) or text(event, "Email", "", required=False)
    # A bounce and a complaint have their own ID; the rest are one per message, recipient and time.
    event_id = text(event, "ID", "", required=False) or f"{record}:{message_id}:{recipient}:{stamp}"
    metadata = obj(event.get("Metadata") or {}, "Metadata")
    return [FeedEvent(
        type=kind, source=SOURCE, event_id=event_id,
        occurred_at=iso_time(stamp, "time") if stamp is not None else None,
        recipient=recipient, references=(message_id or "",),
        outreach_id=text(metadata, METADATA_KEY, "Metadata", required=False),
        url=text(event, "OriginalLink", "", required=False), payload=event)]


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    if settings.postmark_webhook_password is None:
        return []
    expected = f"{settings.postmark_webhook_username}:{settings.postmark_webhook_password.get_secret_value()}"

    async def verify(request: Request, body: bytes) -> Response | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(given, expected.encode()):
            response = refuse(401, "missing or wrong basic-auth credentials",
                              "put postmark_webhook_username:postmark_webhook_password in the webhook URL")
            response.headers["WWW-Authenticate"] = 'Basic realm="outreach"'
            return response
        return None

    return [feed_route(PATH, source=SOURCE, verify=verify, parse=parse, engine=engine, settings=settings,
                       clock=clock, hint=HINT)]

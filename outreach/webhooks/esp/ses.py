"""Amazon SES through SNS: ``POST /webhooks/esp/ses``.

SES publishes bounces, complaints, deliveries (and, with a configuration
set, opens, clicks, delays, unsubscribes) to an SNS topic, which posts them here. Every
message's SNS signature is verified (:mod:`.sns`) and its ``TopicArn`` must
be one of ``ses_topic_arns`` (the route exists only with one set: another
account's topic, validly signed by Amazon, is still refused). A
``SubscriptionConfirmation`` is confirmed by fetching its ``SubscribeURL``
(an Amazon URL, checked like the certificate's). A bad signature is a 403; a
certificate or confirmation Amazon's server does not hand out is a 503 (SNS
retries). Each recipient of a notification is one event, stored once by the
SNS ``MessageId``; our message is found by its Message-ID header, SES's
``mail.messageId`` as provider id, or the ``outreach_message_id`` tag (or,
without a configuration set, our ``X-SES-MESSAGE-TAGS`` header among the
original headers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import EventType
from outreach.store.feedback import FeedEvent
from outreach.webhooks.esp import sns
from outreach.webhooks.esp.base import (
    BadPayload,
    bad_payload,
    checked,
    iso_time,
    obj,
    parse_json,
    read_body,
    refuse,
    saved,
    text,
)

PATH = "/webhooks/esp/ses"
SOURCE = "ses"
TYPE_HEADER = "x-amz-sns-message-type"
#: SES ``eventType`` / ``notificationType`` → ours, and the object listing its recipients.
EVENTS: dict[str, tuple[EventType | None, str, str]] = {
    "Send": (None, "", ""),
    "Delivery": (EventType.DELIVERED, "delivery", "recipients"),
    "Bounce": (EventType.BOUNCE, "bounce", "bouncedRecipients"),
    "Complaint": (EventType.COMPLAINT, "complaint", "complainedRecipients"),
    "DeliveryDelay": (EventType.DEFERRED, "deliveryDelay", "delayedRecipients"),
    "Reject": (EventType.FAILED, "", ""),
    "Rendering Failure": (EventType.FAILED, "", ""),
    "Open": (EventType.OPEN, "open", ""),
    "Click": (EventType.CLICK, "click", ""),
    "Subscription": (EventType.UNSUBSCRIBE, "subscription", ""),
}
#: A bounce's ``bounceType``: only Permanent is hard; Undetermined is not acted on.
BOUNCE_TYPES = {"Permanent": EventType.BOUNCE, "Transient": EventType.SOFT_BOUNCE}
#: A complaint feedback type that is no complaint.
NOT_SPAM = "not-spam"
#: What SNS posts once a topic is set up for SES (not JSON, nothing to store).
VALIDATION_TEXT = "Successfully validated SNS topic for Amazon SES event publishing."
TAG = "outreach_message_id"
HINT = "subscribe this URL (HTTPS) to the SNS topic SES publishes to"
#: Seconds to wait for SNS to take a subscription's confirmation.
CONFIRM_TIMEOUT_S = 10.0


def _recipients(event: dict[str, Any], detail: dict[str, Any], key: str, mail: dict[str, Any]) -> list[str]:
    listed = detail.get(key) if key else None
    if isinstance(listed, list) and listed:
        return [str(r.get("emailAddress", "")) if isinstance(r, dict) else str(r) for r in listed]
    destination = mail.get("destination")
    return [str(r) for r in destination] if isinstance(destination, list) else []


def _unsubscribed_all(detail: dict[str, Any]) -> bool:
    preferences = detail.get("newTopicPreferences")
    return isinstance(preferences, dict) and preferences.get("unsubscribeAll") is True


def _header_tag(headers: list[dict[str, Any]]) -> list[str] | None:
    """Our tag read from the original ``X-SES-MESSAGE-TAGS`` header (``a=b, c=d``)."""
    for header in headers:
        if str(header.get("name", "")).lower() == "x-ses-message-tags":
            for pair in str(header.get("value", "")).split(","):
                name, _, value = pair.strip().partition("=")
                if name == TAG and value:
                    return [value]
    return None


def parse_ses(event: dict[str, Any], *, sns_id: str, sent: str) -> list[FeedEvent]:
    """One SES notification → one event per recipient it concerns."""
    name = text(event, "eventType", "Message", required=False) or text(event, "notificationType", "Message") or ""
    kind, detail_key, recipients_key = EVENTS.get(name, (EventType.UNKNOWN, "", ""))
    if kind is None:
        return []
    mail = obj(event.get("mail") or {}, "Message.mail")
    detail = obj(event.get(detail_key) or {}, f"Message.{detail_key}") if detail_key else {}
    if name == "Bounce":
        kind = BOUNCE_TYPES.get(str(detail.get("bounceType")), EventType.UNKNOWN)
    if name == "Complaint" and detail.get("complaintFeedbackType") == NOT_SPAM:
        kind = EventType.UNKNOWN
    if name == "Subscription" and not _unsubscribed_all(detail):
        kind = EventType.UNKNOWN  # a topic preference changed: ours are not SES topics
    headers = [h for h in mail.get("headers") or [] if isinstance(h, dict)]
    common = obj(mail.get("commonHeaders") or {}, "Message.mail.commonHeaders")
    refs = [str(h.get("value", "")) for h in headers if str(h.get("name", "")).lower() == "message-id"]
    refs += [r for r in (text(common, "messageId", "", required=False), text(mail, "messageId", "mail",
                                                                             required=False)) if r]
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    tagged = tags.get(TAG) if isinstance(tags, dict) else None
    if not (isinstance(tagged, list) and tagged):  # notifications without a configuration set carry no tags
        tagged = _header_tag(headers)
    when = iso_time(detail.get("timestamp") or mail.get("timestamp") or sent, "Message.timestamp")
    return [FeedEvent(type=kind, source=SOURCE, event_id=f"{sns_id}:{recipient}", occurred_at=when,
                      recipient=recipient or None, references=tuple(refs),
                      outreach_id=str(tagged[0]) if isinstance(tagged, list) and tagged else None,
                      url=text(detail, "link", "Message.click", required=False), payload=event)
            for recipient in _recipients(event, detail, recipients_key, mail) or [""]]


def _confirm(url: str) -> None:
    httpx.get(url, timeout=CONFIRM_TIMEOUT_S, follow_redirects=False).raise_for_status()


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    if not settings.ses_topic_arns:
        return []
    topics, pattern = set(settings.ses_topic_arns), settings.sns_url_pattern

    async def endpoint(request: Request) -> Response:
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        try:
            message = obj(parse_json(body), "(body)")
        except BadPayload as exc:
            return bad_payload(exc, HINT)
        kind = message.get("Type")
        if request.headers.get(TYPE_HEADER) != kind:
            return refuse(400, f"header {TYPE_HEADER} does not match the body's Type", HINT)
        try:
            await run_in_threadpool(sns.verify, message, url_pattern=pattern)
        except sns.Unreachable as exc:
            return refuse(503, str(exc), "SNS will retry; check that Amazon's certificate server is reachable")
        except sns.Unverified as exc:
            return refuse(403, f"not a message signed by Amazon SNS: {exc}", HINT)
        if str(message.get("TopicArn")) not in topics:
            return refuse(403, f"topic '{str(message.get('TopicArn'))[:200]}' is not in ses_topic_arns",
                          "add the topic's ARN to ses_topic_arns (OUTREACH_SES_TOPIC_ARNS)")
        if kind == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL", ""))
            if not sns.allowed(url, pattern):
                return refuse(403, "SubscribeURL is not an Amazon SNS URL", HINT)
            try:
                await run_in_threadpool(_confirm, url)
            except httpx.HTTPError as exc:
                return refuse(503, f"the subscription could not be confirmed ({exc})", "SNS will retry")
            return JSONResponse({"confirmed": message["TopicArn"]})
        if kind != "Notification":
            return JSONResponse({"acknowledged": kind})  # UnsubscribeConfirmation: nothing to do
        try:
            raw = message.get("Message")
            if not isinstance(raw, str):
                raise BadPayload("Message", "expected the SES notification as JSON text")
            if raw == VALIDATION_TEXT:
                return JSONResponse({"acknowledged": "topic validation"})
            events = checked(parse_ses(obj(parse_json(raw.encode()), "Message"), sns_id=str(message["MessageId"]),
                               sent=str(message["Timestamp"])))
        except BadPayload as exc:
            return bad_payload(exc, HINT)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            return bad_payload(BadPayload("Message", f"not an SES notification ({exc!r})"), HINT)
        return await saved(engine, settings, events, source=SOURCE, now=clock())

    return [Route(PATH, endpoint, methods=["POST"])]

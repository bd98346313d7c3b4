"""The shop the ESP feed tests run against (its fixtures: :mod:`esp_fixtures`):
the keys the tests hold, and what a marketer would look at afterwards
(events, suppressions, consent)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from esp_helpers import SendGridKey, basic_auth
from factories import NOW
from outreach.domain import ConsentStatus, EventType
from outreach.store import permission
from outreach.store.models import ConsentRecord, Message, Suppression, TrackingEvent

TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
MAILGUN_KEY = "key-mailgun-test"
POSTMARK_PASSWORD = "pm-hook-password"
SENDGRID = SendGridKey.generate()
ARRIVAL = NOW + timedelta(hours=2)
ADA = "ada@example.com"


def postmark_post(client: httpx.Client, payload: dict[str, Any], password: str = POSTMARK_PASSWORD
                  ) -> httpx.Response:
    return client.post("/webhooks/esp/postmark", json=payload, headers=basic_auth("postmark", password))


def events(engine: Engine, *where: Any) -> list[tuple[EventType, int | None]]:
    with Session(engine) as s:
        return [(t, m) for t, m in s.execute(select(TrackingEvent.type, TrackingEvent.message_id)
                                             .where(*where).order_by(TrackingEvent.id))]


def stored(engine: Engine) -> list[tuple[EventType, int | None, datetime, str | None, Any]]:
    """Every stored event: type, message, time, URL and the provider's payload."""
    with Session(engine) as s:
        return [tuple(row) for row in s.execute(  # type: ignore[misc]
            select(TrackingEvent.type, TrackingEvent.message_id, TrackingEvent.occurred_at, TrackingEvent.url,
                   TrackingEvent.payload).order_by(TrackingEvent.id))]


def suppressed(engine: Engine, address: str = ADA) -> str | None:
    with Session(engine) as s:
        return s.scalar(select(Suppression.reason).where(Suppression.address == address))


def refusal(engine: Engine, message_id: int) -> str | None:
    """What the worker would say before sending this message again."""
    with Session(engine) as s:
        return permission.send_refusal(s, s.get_one(Message, message_id))


def consent(engine: Engine, customer_id: int) -> ConsentStatus | None:
    with Session(engine) as s:
        return s.scalar(select(ConsentRecord.status).where(ConsentRecord.customer_id == customer_id)
                        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc()).limit(1))


def stored_count(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(TrackingEvent)) or 0

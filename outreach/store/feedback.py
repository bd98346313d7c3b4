"""Record what an email service provider reports about our mail (a sibling of
:mod:`outreach.store.responses`, whose helpers it uses to write events and
consent changes).

An ESP event is stored once (its dedupe key is the provider's event id),
matched to our message by the references it carries — our Message-ID
``<outreach-msg-<id>@domain>``, an ``outreach_message_id`` the ESP echoes
back, or the provider's id stored in ``messages.provider_id`` — and, when the
message is unknown, to a customer by the recipient's address. Then it acts,
once, when it was new:

* a hard bounce suppresses the address ("hard bounce");
* a complaint suppresses it ("complaint") and revokes email consent;
* an unsubscribe reported by the ESP revokes consent and suppresses ("unsubscribed");
* ``soft_bounce_limit`` soft bounces in a row, without a delivery between,
  suppress it ("soft bounces").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus, EventType
from outreach.store import dialect, permission
from outreach.store.models import Customer, Message, TrackingEvent, WebhookToken
from outreach.store.responses import _set_consent, record_event

#: Our Message-ID's local part (outreach.sending.deliver: ``outreach-msg-<id>``).
OUR_MESSAGE_ID = re.compile(r"outreach-msg-(\d{1,18})@")
#: Suppression reasons, as the report and ``inspect`` show them.
HARD_BOUNCE_REASON = "hard bounce"
COMPLAINT_REASON = "complaint"
SOFT_BOUNCE_REASON = "soft bounces"
UNSUBSCRIBE_REASON = "unsubscribed"
#: What the events_dedupe column holds at most (longer keys are hashed).
MAX_DEDUPE_KEY = 200
#: The event types a soft-bounce streak is counted over.
_STREAK = (EventType.SOFT_BOUNCE, EventType.DELIVERED)


@dataclass(frozen=True, kw_only=True)
class FeedEvent:
    """One normalized event from an ESP's feed, for one recipient."""

    type: EventType
    source: str  # "ses", "sendgrid", "mailgun", "postmark"
    event_id: str  # the provider's id of this event (for this recipient)
    occurred_at: datetime | None  # naive UTC; None: the provider gave no time (dated on arrival)
    recipient: str | None = None
    #: Ids our message may be known by: Message-IDs, the provider's message id.
    references: tuple[str, ...] = ()
    #: Our outbox id, when the ESP echoes it back (custom args, metadata).
    outreach_id: str | None = None
    url: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        key = f"{self.source}:{self.event_id}"
        if len(key) > MAX_DEDUPE_KEY:
            key = f"{self.source}:sha256:{hashlib.sha256(self.event_id.encode()).hexdigest()}"
        return key


@dataclass(frozen=True)
class Matched:
    message_id: int | None
    customer_ids: tuple[int, ...]
    address: str | None  # the address to suppress: as we sent to it, else as stored, else as reported


def _message(session: Session, event: FeedEvent) -> tuple[int, int, str | None] | None:
    ids = {int(m.group(1)) for ref in event.references if (m := OUR_MESSAGE_ID.search(ref))}
    if event.outreach_id and event.outreach_id.isdigit() and len(event.outreach_id) < 19:
        ids.add(int(event.outreach_id))
    provider_ids = {ref.strip() for ref in event.references if ref.strip()}
    provider_ids |= {f"<{ref.strip('<>')}>" for ref in provider_ids} | {ref.strip("<>") for ref in provider_ids}
    clauses = []
    if ids:
        clauses.append(Message.id.in_(ids))
    if provider_ids:
        clauses.append(Message.provider_id.in_(provider_ids))
    if not clauses:
        return None
    row = session.execute(select(Message.id, Message.customer_id, Message.to_address)
                          .where(or_(*clauses), Message.channel == Channel.EMAIL)
                          .order_by(Message.id).limit(1)).first()
    return (row[0], row[1], row[2]) if row else None


def match(session: Session, event: FeedEvent) -> Matched:
    """The message and customer(s) an event is about, as far as we can tell."""
    found = _message(session, event)
    if found is not None:
        message_id, customer_id, to_address = found
        return Matched(message_id, (customer_id,), to_address or event.recipient)
    if not event.recipient:
        return Matched(None, (), None)
    rows = session.execute(select(Customer.id, Customer.email)
                           .where(func.lower(Customer.email) == event.recipient.strip().lower())
                           .order_by(Customer.id)).all()
    return Matched(None, tuple(r[0] for r in rows), rows[0][1] if rows else event.recipient.strip())


def claim_token(session: Session, *, source: str, token: str, now: datetime) -> bool:
    """Remember a delivery's one-time token; False when it was seen before (a replay)."""
    stmt = dialect.insert(session, WebhookToken).values(source=source, token=token, seen_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=["source", "token"])
    return session.execute(stmt.returning(WebhookToken.id)).scalar() is not None


def _soft_bounce_streak(session: Session, customer_id: int, limit: int) -> bool:
    """Whether the customer's last ``limit`` ESP deliveries and soft bounces are all soft bounces."""
    latest = list(session.scalars(
        select(TrackingEvent.type)
        .where(TrackingEvent.customer_id == customer_id, TrackingEvent.type.in_(_STREAK),
               TrackingEvent.source.in_(FEED_SOURCES))
        .order_by(TrackingEvent.occurred_at.desc(), TrackingEvent.id.desc()).limit(limit)))
    return len(latest) == limit and all(t is EventType.SOFT_BOUNCE for t in latest)


#: The sources whose events count towards a soft-bounce streak.
FEED_SOURCES = ("ses", "sendgrid", "mailgun", "postmark")


def _opt_out(session: Session, event: FeedEvent, found: Matched, *, reason: str, now: datetime) -> None:
    for customer_id in found.customer_ids:
        _set_consent(session, customer_id=customer_id, channel=Channel.EMAIL, status=ConsentStatus.REVOKED,
                     occurred_at=now, source=event.source,
                     evidence=f"{reason} reported by {event.source} (event {event.event_id})"[:2000])


def record_feed_event(session: Session, event: FeedEvent, *, soft_bounce_limit: int, now: datetime) -> bool:
    """Store ``event`` once and act on it; False when it was already stored.
    Consent changes and suppressions are dated ``now`` (when we learnt of
    them): an opt-out takes effect from its arrival, after any earlier grant."""
    found = match(session, event)
    stored = record_event(session, type=event.type, occurred_at=event.occurred_at or now, source=event.source,
                          message_id=found.message_id,
                          customer_id=found.customer_ids[0] if found.customer_ids else None,
                          url=event.url, dedupe_key=event.dedupe_key, payload=event.payload)
    if stored is None:
        return False
    reason = {EventType.BOUNCE: HARD_BOUNCE_REASON, EventType.COMPLAINT: COMPLAINT_REASON,
              EventType.UNSUBSCRIBE: UNSUBSCRIBE_REASON}.get(event.type)
    if event.type is EventType.SOFT_BOUNCE and any(
            _soft_bounce_streak(session, c, soft_bounce_limit) for c in found.customer_ids):
        reason = SOFT_BOUNCE_REASON
    if event.type in (EventType.COMPLAINT, EventType.UNSUBSCRIBE):
        _opt_out(session, event, found, reason=event.type.value, now=now)
    if reason and found.address:
        permission.suppress(session, channel=Channel.EMAIL, address=found.address, reason=reason,
                            now=now)
    return True


def record_feed_events(session: Session, events: Sequence[FeedEvent], *, soft_bounce_limit: int,
                       now: datetime) -> int:
    """Store and act on each event; how many were new."""
    return sum(record_feed_event(session, e, soft_bounce_limit=soft_bounce_limit, now=now) for e in events)

"""The send path's statements: claim a batch, load what sending it needs,
record how it went — a few statements per batch, never one per message.

Every transition is a compare-and-set: a worker claims only rows that are
``queued`` (and whose rule is enabled and not paused), and finishes only rows
that are ``sending`` *and claimed by itself*. So N workers on M machines
never take the same message, a message the broker hands over twice is sent
once, and a worker that was presumed dead (its messages given to another)
cannot overwrite what the other recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Numeric,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from outreach.clock import utcnow
from outreach.domain import Channel, ConsentStatus, CustomerType, MessageStatus
from outreach.store import campaigns, dialect, optouts, preferences
from outreach.store.models import CurrentConsent, Customer, CustomerTag, CustomEvent, Message, Suppression
from outreach.store.triggers import EVENT_OCCURRENCE

#: Rows an ``IN (...)`` list holds at most (well under both databases' limits).
IN_CHUNK = 1000
#: Why a message to an address whose opt-out is in the inbox is skipped.
OPT_OUT_ARRIVING = "opt-out received, being recorded"
#: Plain Core statements (executemany, no ORM bookkeeping per row).
MESSAGES = cast(Table, Message.__table__)
M = MESSAGES.c


@dataclass(frozen=True, kw_only=True)
class Person:
    """The customer fields templates read (``customer.*``)."""

    external_id: str
    name: str
    email: str | None
    phone: str | None
    locale: str
    customer_type: CustomerType
    attributes: dict[str, Any]
    tags: list[str]
    birthday: date | None


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """A message this worker now holds in ``sending``, with what the
    permission re-check and rendering need."""

    id: int
    rule_id: int
    run_id: int | None
    channel: Channel
    attempts: int
    planned_at: datetime
    customer: Person | None  # None: the customer was erased
    address: str | None
    consent: ConsentStatus | None
    suppressed: str | None
    #: The custom event an ``event`` rule's message answers (name, occurred_at, properties).
    event: dict[str, Any] | None = None
    #: The customer's own choices that hold a marketing message back (``store.preferences``).
    hold: preferences.Hold = preferences.NO_HOLD
    #: The rule's A/B variant (its template is rendered); None: the rule's template.
    variant: str | None = None

    def refusal(self, now: datetime | None = None) -> str | None:
        """Permission first, at send time (``now``, default the wall clock):
        why this message must not go out, or None."""
        if self.customer is None:
            return "customer deleted"
        if not self.address:
            return f"customer has no {self.channel.value} address"
        if self.consent is not ConsentStatus.GRANTED:
            return f"no {self.channel.value} consent (latest: {self.consent.value if self.consent else 'none'})"
        if self.suppressed:
            return f"address suppressed ({self.suppressed})"
        if self.hold.topic_off:
            return preferences.topic_refusal(self.hold.topic_off)
        if self.hold.paused_until is not None and self.hold.paused_until > (now or utcnow()):
            return preferences.pause_refusal(self.hold.paused_until)
        return None


def claim_batch(conn: Connection, ids: Sequence[int], *, worker_id: str, now: datetime) -> list[int]:
    """queued → sending for those of ``ids`` still queued and of an active
    rule, in one statement; rows another worker holds are skipped, not
    waited for (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
    writer at a time). Returns the ids this worker now holds."""
    if not ids:
        return []
    candidates = (
        select(Message.id)
        .where(dialect.among(conn, Message.id, ids), Message.status == MessageStatus.QUEUED,
               campaigns.sending_allowed())
        .with_for_update(skip_locked=True)
    )
    result = conn.execute(
        update(MESSAGES)
        .where(M.id.in_(candidates))
        .values(status=MessageStatus.SENDING, claimed_by=worker_id, claimed_at=now, attempts=M.attempts + 1)
        .returning(M.id)
    )
    return sorted(result.scalars())


def load_claimed(conn: Connection, ids: Sequence[int]) -> list[Claimed]:
    """Each claimed message with its customer, address, live consent and
    suppression — one query, plus one for the customers' tags."""
    if not ids:
        return []
    rows = conn.execute(_loading(dialect.is_postgresql(conn)), {"ids": list(ids)}).all()
    tags: dict[int, list[str]] = defaultdict(list)
    customer_ids = sorted({r.cid for r in rows if r.cid is not None})
    for start in range(0, len(customer_ids), IN_CHUNK):
        for cid, tag in conn.execute(
            select(CustomerTag.customer_id, CustomerTag.tag)
            .where(dialect.among(conn, CustomerTag.customer_id, customer_ids[start:start + IN_CHUNK]))
        ):
            tags[cid].append(tag)
    events = _events(conn, [r.occurrence_key for r in rows])
    inbox = optouts.inbox_for(conn.engine)
    arriving = inbox.pending_addresses() if inbox is not None else set()
    # Topics turned off and pauses: one query for the batch, pending changes laid over.
    held = preferences.holds(conn, [row.id for row in rows], pending=optouts.pending_changes(conn.engine))
    claimed = []
    for (message_id, rule_id, run_id, channel, attempts, planned_at, occurrence_key, variant, cid, external_id, name,
         email, phone, locale, customer_type, attributes, birthday, address, consent, suppressed) in rows:
        claimed.append(Claimed(
            id=message_id, rule_id=rule_id, run_id=run_id, channel=channel, attempts=attempts, variant=variant,
            planned_at=planned_at, address=address, consent=consent,
            # An opt-out still in the inbox (the database was busy) counts as recorded.
            suppressed=OPT_OUT_ARRIVING if (channel, address) in arriving else suppressed,
            event=events.get(occurrence_key), hold=held.get(message_id, preferences.NO_HOLD),
            customer=None if cid is None else Person(
                external_id=external_id, name=name, email=email, phone=phone, locale=locale,
                customer_type=customer_type, attributes=dict(attributes or {}), tags=sorted(tags[cid]),
                birthday=birthday,
            ),
        ))
    return claimed


@lru_cache(maxsize=2)
def _loading(postgresql: bool) -> Select[*tuple[Any, ...]]:
    """The statement of :func:`load_claimed` (built once: its ids are the parameter ``ids``)."""
    consent = aliased(CurrentConsent)
    address = case((Message.channel == Channel.EMAIL, Customer.email), else_=Customer.phone)
    suppressed = (
        select(Suppression.reason)
        .where(Suppression.channel == Message.channel, Suppression.address == address)
        .limit(1)
        .scalar_subquery()
    )
    among = dialect.among("postgresql" if postgresql else "sqlite", Message.id, "ids")
    return (
        select(Message.id, Message.rule_id, Message.run_id, Message.channel, Message.attempts, Message.planned_at,
               Message.occurrence_key, Message.variant,
               Customer.id.label("cid"), Customer.external_id, Customer.name, Customer.email, Customer.phone,
               Customer.locale, Customer.customer_type, Customer.attributes, Customer.birthday,
               address.label("address"), consent.status.label("consent"), suppressed.label("suppressed"))
        .outerjoin(Customer, Customer.id == Message.customer_id)
        .outerjoin(consent, and_(consent.customer_id == Message.customer_id, consent.channel == Message.channel))
        .where(among)
        .order_by(Message.id)
    )


def _events(conn: Connection, occurrence_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The custom events that ``event:<id>`` occurrences answer, by occurrence key."""
    ids = sorted({int(key.removeprefix(EVENT_OCCURRENCE)) for key in occurrence_keys
                  if key.startswith(EVENT_OCCURRENCE) and key.removeprefix(EVENT_OCCURRENCE).isdigit()})
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), IN_CHUNK):
        for event_id, name, occurred_at, properties in conn.execute(
            select(CustomEvent.id, CustomEvent.name, CustomEvent.occurred_at, CustomEvent.properties)
            .where(CustomEvent.id.in_(ids[start:start + IN_CHUNK]))
        ):
            found[f"{EVENT_OCCURRENCE}{event_id}"] = {"name": name, "occurred_at": occurred_at,
                                                      "properties": dict(properties or {})}
    return found


@dataclass(frozen=True, kw_only=True)
class Sent:
    id: int
    to_address: str
    provider_id: str
    cost: Decimal
    subject: str | None
    sent_at: datetime
    attribute_until: datetime


@dataclass(frozen=True, kw_only=True)
class Ended:
    """A message that will not be sent: ``skipped`` (permission) or ``failed``."""

    id: int
    status: MessageStatus
    error: str


@dataclass(frozen=True, kw_only=True)
class Retry:
    """A transient failure: back to ``planned`` until ``not_before``."""

    id: int
    not_before: datetime
    error: str




def _mine(worker_id: str) -> Any:
    return and_(M.id == bindparam("b_id"), M.status == MessageStatus.SENDING, M.claimed_by == literal(worker_id))


def record(conn: Connection, *, worker_id: str, now: datetime, sent: Sequence[Sent] = (),
           ended: Sequence[Ended] = (), retry: Sequence[Retry] = ()) -> int:
    """Record outcomes in bulk (one executemany per kind); only rows this
    worker still holds change. Returns how many rows changed."""
    changed = 0
    if sent and dialect.is_postgresql(conn):
        changed += _record_sent_pg(conn, worker_id=worker_id, now=now, sent=sent)
    elif sent:
        stmt = update(MESSAGES).where(_mine(worker_id)).values(
            status=MessageStatus.SENT, finished_at=now, last_error=None, to_address=bindparam("b_to"),
            sent_at=bindparam("b_sent_at"), provider_id=bindparam("b_provider"), cost=bindparam("b_cost"),
            subject=bindparam("b_subject"), attribute_until=bindparam("b_until"),
        )
        changed += _rows(conn.execute(stmt, [
            {"b_id": s.id, "b_to": s.to_address, "b_sent_at": s.sent_at, "b_provider": s.provider_id,
             "b_cost": s.cost, "b_subject": s.subject, "b_until": s.attribute_until} for s in sent
        ]))
    if ended:
        stmt = update(MESSAGES).where(_mine(worker_id)).values(
            status=bindparam("b_status"), finished_at=now, last_error=bindparam("b_error"), cost=Decimal("0"),
        )
        changed += _rows(conn.execute(stmt, [
            {"b_id": e.id, "b_status": e.status, "b_error": e.error} for e in ended]))
    if retry:
        stmt = update(MESSAGES).where(_mine(worker_id)).values(
            status=MessageStatus.PLANNED, claimed_by=None, not_before=bindparam("b_not_before"),
            last_error=bindparam("b_error"),
        )
        changed += _rows(conn.execute(stmt, [
            {"b_id": r.id, "b_not_before": r.not_before, "b_error": r.error} for r in retry]))
    return changed


#: The sent messages of a flush as one table of arrays (PostgreSQL's unnest).
_SENT_ROWS = func.unnest(
    bindparam("ids", type_=ARRAY(BigInteger)), bindparam("tos", type_=ARRAY(String)),
    bindparam("sent_ats", type_=ARRAY(DateTime)), bindparam("providers", type_=ARRAY(String)),
    bindparam("costs", type_=ARRAY(Numeric)), bindparam("subjects", type_=ARRAY(String)),
    bindparam("untils", type_=ARRAY(DateTime)),
).table_valued(
    column("id", BigInteger), column("to_address", String), column("sent_at", DateTime),
    column("provider_id", String), column("cost", Numeric), column("subject", String),
    column("attribute_until", DateTime),
).render_derived(name="sent_rows")


def _record_sent_pg(conn: Connection, *, worker_id: str, now: datetime, sent: Sequence[Sent]) -> int:
    """``sent`` recorded in one statement, its values as arrays: one
    executemany row each cost PostgreSQL and the worker a statement a message."""
    v = _SENT_ROWS.c
    stmt = (
        update(MESSAGES)
        .where(M.id == v.id, M.status == MessageStatus.SENDING, M.claimed_by == bindparam("worker"))
        .values(status=MessageStatus.SENT, finished_at=bindparam("now"), last_error=None, to_address=v.to_address,
                sent_at=v.sent_at, provider_id=v.provider_id, cost=v.cost, subject=v.subject,
                attribute_until=v.attribute_until)
    )
    return _rows(conn.execute(stmt, {
        "worker": worker_id, "now": now, "ids": [s.id for s in sent], "tos": [s.to_address for s in sent],
        "sent_ats": [s.sent_at for s in sent], "providers": [s.provider_id for s in sent],
        "costs": [s.cost for s in sent], "subjects": [s.subject for s in sent],
        "untils": [s.attribute_until for s in sent],
    }))


def release(conn: Connection, ids: Sequence[int], *, worker_id: str, error: str) -> int:
    """sending → queued for messages this worker holds but did not try (it is
    stopping, or something unexpected broke the batch)."""
    if not ids:
        return 0
    result = conn.execute(
        update(MESSAGES)
        .where(dialect.among(conn, M.id, ids), M.status == MessageStatus.SENDING, M.claimed_by == worker_id)
        .values(status=MessageStatus.QUEUED, claimed_by=None, attempts=M.attempts - 1, last_error=error)
    )
    return _rows(result)


def _rows(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if count is not None and count >= 0 else 0

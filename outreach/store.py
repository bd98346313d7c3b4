"""The store: every query the engine runs, behind a narrow API.

Planning is one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per rule: the
trigger selects (customer, occurrence), the segment filters, consent and
suppression choose the first permitted channel, cooldown excludes recent
recipients, holdout assigns the control group — all inside the database.
Sending moves each row through explicit states with compare-and-set updates,
so a message delivered twice by the broker is claimed once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Numeric,
    or_,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from outreach.clock import zone_or_utc
from outreach.models import (
    CampaignRun,
    Channel,
    ConsentRecord,
    ConsentStatus,
    CurrentConsent,
    Customer,
    Message,
    MessageStatus,
    Rule,
    Suppression,
)
from outreach.rules import LoadedRule, schema
from outreach.segments import compile_condition
from outreach.triggers import trigger_select

#: Multiplier of the holdout hash (Knuth's golden-ratio constant, odd, < 2^32).
HOLDOUT_MULTIPLIER = 2654435761
HOLDOUT_MODULUS = 2**32
#: A worker that claimed a message and went silent this long is presumed dead.
CLAIM_LEASE = timedelta(minutes=15)


# ------------------------------------------------------------------ rules
def rule_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sync_rule(session: Session, loaded: LoadedRule, now: datetime) -> Rule:
    """Record the rule's current definition (by name) and return its row."""
    spec = loaded.spec
    row = session.scalar(select(Rule).where(Rule.name == spec.name))
    definition = json.loads(spec.model_dump_json(by_alias=True))
    checksum = rule_checksum(loaded.text)
    if row is None:
        row = Rule(
            name=spec.name,
            path=str(loaded.path),
            definition=definition,
            checksum=checksum,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    elif row.checksum != checksum or row.path != str(loaded.path):
        row.definition, row.checksum, row.path, row.updated_at = (
            definition,
            checksum,
            str(loaded.path),
            now,
        )
    return row


#: Memory PostgreSQL may use per sort/hash in planning transactions, so the
#: set-based statements over millions of rows do not spill to disk.
PLANNING_WORK_MEM = "256MB"


def tune_session(session: Session, work_mem: str = PLANNING_WORK_MEM) -> None:
    """Per-transaction settings for large set-based statements."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.set_config("work_mem", work_mem, True)))


def materialize(session: Session, query: Select, name: str, *, key: str | None = None) -> Any:
    """Evaluate ``query`` once into a temporary table (dropped at the end of the
    transaction on PostgreSQL, replaced on SQLite) and return the Table.

    ``key`` names a column that is unique in the result: it becomes the
    table's primary key (on SQLite an integer key is the rowid, so rows are
    found by it without a separate index)."""
    from sqlalchemy import Column, MetaData, String, Table
    from sqlalchemy.types import NullType

    bind = session.connection()
    columns = [
        Column(c.name, String() if isinstance(c.type, NullType) else c.type, primary_key=c.name == key,
               autoincrement=False)
        for c in query.selected_columns
    ]
    options = {"postgresql_on_commit": "DROP"} if bind.dialect.name == "postgresql" else {}
    table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"], **options)
    if bind.dialect.name != "postgresql":
        table.drop(bind, checkfirst=True)
    table.create(bind)
    session.execute(insert(table).from_select([c.name for c in columns], query))
    return table


def has_lateral(session: Session) -> bool:
    """LATERAL joins (PostgreSQL; SQLite has none)."""
    return session.get_bind().dialect.name == "postgresql"


def distinct_timezones(session: Session) -> list[str]:
    return list(session.scalars(select(Customer.timezone).distinct()))


# ------------------------------------------------------------------ permission
def address_column(channel: Channel) -> Any:
    return Customer.email if channel is Channel.EMAIL else Customer.phone


def latest_consent(channel: Channel, now: datetime | None = None) -> Any:
    """The customer's latest consent status on ``channel`` (NULL if none), from the ledger."""
    query = select(ConsentRecord.status).where(
        ConsentRecord.customer_id == Customer.id, ConsentRecord.channel == channel
    )
    if now is not None:
        query = query.where(ConsentRecord.recorded_at <= now)
    return (
        query.order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def current_consent(channel: Channel) -> Any:
    """``current_consents`` of one channel, to outer-join on the customer."""
    return aliased(CurrentConsent, name=f"consent_{channel.value}")


def consent_as_of(current: Any, channel: Channel, now: datetime) -> ColumnElement[Any]:
    """The status as of ``now`` from the joined ``current_consents`` row: exact
    when that row was recorded by ``now`` (always, evaluating the present);
    otherwise (``--now`` before a later change) read from the ledger. No row:
    the customer never gave or refused consent on this channel."""
    return case(
        (current.recorded_at.is_(None), None),
        (current.recorded_at <= now, current.status),
        else_=latest_consent(channel, now),
    )


def permitted(channel: Channel, now: datetime, current: Any) -> ColumnElement[bool]:
    """Permission first: an address, consent granted as of ``now``, not suppressed."""
    address = address_column(channel)
    return and_(
        address.is_not(None),
        address != "",
        consent_as_of(current, channel, now) == ConsentStatus.GRANTED,
        not_(
            exists().where(Suppression.channel == channel, Suppression.address == address)
        ),
    )


def holdout_salt(rule_name: str) -> int:
    return int.from_bytes(hashlib.sha256(rule_name.encode()).digest()[:4], "big")


def holdout_threshold(percent: float) -> int:
    return int(round(percent / 100 * HOLDOUT_MODULUS))


def is_held_out(rule_name: str, customer_id: int, percent: float) -> bool:
    """Python statement of the SQL holdout assignment (same customer, same rule
    → same group on every run)."""
    bucket = (customer_id * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS
    return bucket < holdout_threshold(percent)


def _holdout_bucket(rule_name: str) -> ColumnElement[int]:
    return (Customer.id * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS


# ------------------------------------------------------------------ planning
#: Statuses that count against cooldowns and frequency caps.
COUNTED = (MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT)


def _window_for(spec: schema.RuleSpec, policy: schema.Policy | None, channel: Channel) -> schema.SendWindow | None:
    if spec.send_window is not None:
        return spec.send_window
    return policy.send_windows.get(channel) if policy else None


def next_allowed(now: datetime, tz_name: str, window: schema.SendWindow) -> datetime | None:
    """None if ``now`` is inside the local send window, else the next start (naive UTC)."""
    zone = zone_or_utc(tz_name)
    local = now.replace(tzinfo=UTC).astimezone(zone)
    start, end = (time.fromisoformat(window.start), time.fromisoformat(window.end))
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside or start == end:
        return None
    day = local.date() if t < start else local.date() + timedelta(days=1)
    opening = datetime.combine(day, start, tzinfo=zone)
    return opening.astimezone(UTC).replace(tzinfo=None)


def _messages_since(customer_id: Any, since: datetime, statuses: tuple[MessageStatus, ...],
                    *extra: ColumnElement[bool]) -> Any:
    """How many of one customer's messages since ``since`` have one of ``statuses``.

    The status is tested inside the count, not in WHERE: the look-up then
    always goes through the customer's own index entries. With the status in
    WHERE, a planner holding stale statistics may AND in the status index —
    reading every queued message of the outbox for each candidate."""
    return (
        select(func.count(case((Message.status.in_(statuses), 1), else_=None)))
        .select_from(Message)
        .where(Message.customer_id == customer_id, Message.planned_at > since, *extra)
        .scalar_subquery()
    )


def eligible_select(
    spec: schema.RuleSpec,
    *,
    rule_id: int | None,
    now: datetime,
    timezones: list[str],
    policy: schema.Policy | None = None,
    segments: dict[str, Any] | None = None,
    lateral: bool = False,
) -> Select:
    """Who is eligible now: one row per customer of trigger ∩ segment with

    * ``channel`` — the first channel in the rule's order that is permitted
      (consent granted, address, not suppressed) and under the caps; NULL if none;
    * ``consent_channel`` — the same ignoring caps (to tell "capped" from "no consent");
    * ``to_address``, ``cost``, ``held_out``, ``cooldown_clear``, ``not_before``.
    """
    cand = trigger_select(spec, now, timezones=timezones).subquery("cand")
    consents = {ch: current_consent(ch) for ch in spec.channels}
    flags = {ch: permitted(ch, now, consents[ch]) for ch in spec.channels}
    # Counts of the candidate's recent messages: (since, statuses, extra filter).
    counted: dict[str, tuple[datetime, tuple[MessageStatus, ...], list[ColumnElement[bool]]]] = {}
    if rule_id is not None and spec.cooldown_days > 0:
        counted["cooldown_hits"] = (now - timedelta(days=spec.cooldown_days),
                                    COUNTED + (MessageStatus.HELD_OUT,), [Message.rule_id == rule_id])
    cap = policy.frequency_cap if policy else None
    if cap and cap.max_messages:
        counted["recent_total"] = (now - timedelta(days=cap.days), COUNTED, [])
    for ch in spec.channels:
        if cap and ch in cap.per_channel:
            counted[f"recent_{ch.value}"] = (now - timedelta(days=cap.days), COUNTED, [Message.channel == ch])
    # Counted per candidate through the (customer, planned_at) index: cost
    # follows the candidates, not every message of the window. With LATERAL
    # (PostgreSQL) one index range scan gives every count; SQLite runs one
    # correlated count each.
    recent: Any = None
    if counted and lateral:
        recent = (
            select(*[
                func.count(case((and_(Message.planned_at > since, Message.status.in_(statuses), *extra), 1),
                                else_=None)).label(name)
                for name, (since, statuses, extra) in counted.items()
            ])
            .where(Message.customer_id == cand.c.customer_id,
                   Message.planned_at > min(since for since, _, _ in counted.values()))
            .lateral("recent")
        )
        count_cols = {name: recent.c[name] for name in counted}
    else:
        count_cols = {name: _messages_since(cand.c.customer_id, since, statuses, *extra)
                      for name, (since, statuses, extra) in counted.items()}
    cooldown_clear: ColumnElement[bool] = (
        count_cols.pop("cooldown_hits") == 0 if "cooldown_hits" in count_cols else literal(True)
    )
    recent_cols = [col.label(name) for name, col in count_cols.items()]
    query = (
        select(
            cand.c.customer_id,
            cand.c.occurrence_key,
            Customer.timezone.label("timezone"),
            _holdout_bucket(spec.name).label("bucket"),
            *[flags[ch].label(f"ok_{ch.value}") for ch in spec.channels],
            *[address_column(ch).label(f"addr_{ch.value}") for ch in spec.channels],
            cooldown_clear.label("cooldown_clear"),
            *recent_cols,
        )
        .join(Customer, Customer.id == cand.c.customer_id)
        .where(compile_condition(spec.segment, now, segments=segments))
    )
    for ch, current in consents.items():
        query = query.outerjoin(current, and_(current.customer_id == Customer.id, current.channel == ch))
    if recent is not None:
        query = query.join(recent, true())
    # MATERIALIZED: the database computes each customer's consent, suppression
    # and cap flags once; inlined, every CASE below would re-run the subqueries.
    inner = query.cte("eligible").prefix_with("MATERIALIZED")

    def under_cap(ch: Channel) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if cap and cap.max_messages:
            parts.append(inner.c.recent_total < cap.max_messages)
        if cap and ch in cap.per_channel:
            parts.append(inner.c[f"recent_{ch.value}"] < cap.per_channel[ch])
        return and_(*parts) if parts else literal(True)

    ok = {ch: inner.c[f"ok_{ch.value}"] for ch in spec.channels}
    sendable = {ch: and_(ok[ch], under_cap(ch)) for ch in spec.channels}
    channel = case(*[(sendable[ch], literal(ch.value)) for ch in spec.channels], else_=None)
    consent_channel = case(*[(ok[ch], literal(ch.value)) for ch in spec.channels], else_=None)
    address = case(*[(sendable[ch], inner.c[f"addr_{ch.value}"]) for ch in spec.channels], else_=None)
    cost = case(
        *[(sendable[ch], literal(getattr(spec.cost, ch.value), Numeric(10, 4))) for ch in spec.channels],
        else_=literal(Decimal("0"), Numeric(10, 4)),
    )
    # The channel actually chosen: sendable, and no earlier channel was.
    chosen = {
        ch: and_(sendable[ch], *[not_(sendable[prev]) for prev in spec.channels[:index]])
        for index, ch in enumerate(spec.channels)
    }
    deferrals = []
    for ch in spec.channels:
        window = _window_for(spec, policy, ch)
        if window is None:
            continue
        for tz in timezones:
            opening = next_allowed(now, tz, window)
            if opening is not None:
                deferrals.append((and_(chosen[ch], inner.c.timezone == tz), literal(opening)))
    not_before = case(*deferrals, else_=None) if deferrals else literal(None).cast(DateTime)
    held = inner.c.bucket < holdout_threshold(spec.holdout_percent)
    return select(
        inner.c.customer_id,
        inner.c.occurrence_key,
        channel.label("channel"),
        consent_channel.label("consent_channel"),
        address.label("to_address"),
        cost.label("cost"),
        held.label("held_out"),
        inner.c.cooldown_clear,
        not_before.label("not_before"),
    )


@dataclass(frozen=True)
class PlanCounts:
    planned: int
    held_out: int


def _insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    return (postgresql if name == "postgresql" else sqlite).insert(Message)


def plan(
    session: Session,
    spec: schema.RuleSpec,
    rule: Rule,
    run: CampaignRun,
    *,
    policy: schema.Policy | None = None,
    segments: dict[str, Any] | None = None,
) -> PlanCounts:
    """Write this run's messages (planned or held_out); existing occurrences
    are left alone, so planning twice plans nothing new."""
    now = run.as_of
    # Evaluated into a temporary table first: the cooldown and cap look-ups
    # then never read the messages this statement is inserting (on an outbox
    # the planner believes empty, that would turn quadratic).
    eligible = materialize(session, eligible_select(
        spec, rule_id=rule.id, now=now, timezones=distinct_timezones(session),
        policy=policy, segments=segments, lateral=has_lateral(session),
    ), "outreach_eligible")
    # Sendable now → straight to queued (no second pass over the rows);
    # deferred by quiet hours → planned until its window opens.
    status = case(
        (eligible.c.held_out, literal(MessageStatus.HELD_OUT.value)),
        (eligible.c.not_before.is_not(None), literal(MessageStatus.PLANNED.value)),
        else_=literal(MessageStatus.QUEUED.value),
    )
    queued_at = case(
        (and_(~eligible.c.held_out, eligible.c.not_before.is_(None)), literal(now)), else_=None
    )
    rows = select(
        literal(rule.id),
        literal(run.id),
        eligible.c.customer_id,
        eligible.c.channel,
        eligible.c.occurrence_key,
        status,
        eligible.c.to_address,
        literal(now),
        case((eligible.c.held_out, literal(Decimal("0"), Numeric(10, 4))), else_=eligible.c.cost),
        literal(0),
        case(
            (eligible.c.held_out, literal(now + timedelta(days=spec.attribution_window_days))),
            else_=None,
        ),
        case((eligible.c.held_out, None), else_=eligible.c.not_before),
        queued_at,
    ).where(eligible.c.channel.is_not(None), eligible.c.cooldown_clear)
    stmt = (
        _insert(session)
        .from_select(
            [
                "rule_id",
                "run_id",
                "customer_id",
                "channel",
                "occurrence_key",
                "status",
                "to_address",
                "planned_at",
                "cost",
                "attempts",
                "attribute_until",
                "not_before",
                "queued_at",
            ],
            rows,
        )
        .on_conflict_do_nothing(index_elements=["rule_id", "customer_id", "occurrence_key"])
    )
    session.execute(stmt)
    counts = dict(
        session.execute(
            select(Message.status, func.count())
            .where(Message.run_id == run.id)
            .group_by(Message.status)
        ).all()
    )
    result = PlanCounts(
        planned=counts.get(MessageStatus.PLANNED, 0) + counts.get(MessageStatus.QUEUED, 0),
        held_out=counts.get(MessageStatus.HELD_OUT, 0),
    )
    run.planned, run.held_out = result.planned, result.held_out
    return result


def start_run(session: Session, rule: Rule, *, as_of: datetime, started_at: datetime) -> CampaignRun:
    run = CampaignRun(rule_id=rule.id, as_of=as_of, started_at=started_at)
    session.add(run)
    session.flush()
    return run


# ------------------------------------------------------------------ queueing
def mark_queued(session: Session, *, run_id: int | None, now: datetime) -> list[int]:
    """The ids to hand to the broker: a run's messages planned as queued, and
    (for a run or every run) planned messages whose send window has opened,
    which move planned → queued here."""
    due = select(Message.id).where(
        Message.status == MessageStatus.PLANNED,
        or_(Message.not_before.is_(None), Message.not_before <= now),
    )
    if run_id is not None:
        due = due.where(Message.run_id == run_id)
    due_ids = list(session.scalars(due.order_by(Message.id)))
    for start in range(0, len(due_ids), 5000):
        chunk = due_ids[start : start + 5000]
        session.execute(
            update(Message)
            .where(Message.id.in_(chunk), Message.status == MessageStatus.PLANNED)
            .values(status=MessageStatus.QUEUED, queued_at=now)
        )
    ids = due_ids
    if run_id is not None:
        ids = sorted({*due_ids, *session.scalars(
            select(Message.id).where(Message.run_id == run_id, Message.status == MessageStatus.QUEUED)
        )})
    return ids


def stranded(session: Session, *, now: datetime) -> list[int]:
    """Messages to hand to the broker again: queued ones whose broker message
    may be lost, and ones whose worker died mid-send (lease expired). Re-enqueueing
    is safe: a worker only sends what it claims."""
    cutoff = now - CLAIM_LEASE
    expired = session.scalars(
        select(Message.id).where(
            Message.status == MessageStatus.SENDING, Message.claimed_at < cutoff
        )
    ).all()
    if expired:
        session.execute(
            update(Message)
            .where(Message.id.in_(expired), Message.status == MessageStatus.SENDING)
            .values(status=MessageStatus.QUEUED, queued_at=now)
        )
    waiting = session.scalars(
        select(Message.id).where(
            Message.status == MessageStatus.QUEUED, Message.queued_at < cutoff
        )
    ).all()
    return sorted({*expired, *waiting})


# ------------------------------------------------------------------ sending
def claim(session: Session, message_id: int, *, now: datetime) -> bool:
    """queued → sending, atomically; False when another delivery got it first."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENDING, claimed_at=now, attempts=Message.attempts + 1)
    )
    return result.rowcount == 1


def send_refusal(session: Session, message: Message) -> str | None:
    """Re-check permission at send time; the reason to skip, or None."""
    customer = session.get(Customer, message.customer_id)
    if customer is None:
        return "customer deleted"
    address = customer.email if message.channel is Channel.EMAIL else customer.phone
    if not address:
        return f"customer has no {message.channel.value} address"
    status = session.scalar(
        select(ConsentRecord.status)
        .where(
            ConsentRecord.customer_id == customer.id, ConsentRecord.channel == message.channel
        )
        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )
    if status is not ConsentStatus.GRANTED:
        return f"no {message.channel.value} consent (latest: {status.value if status else 'none'})"
    suppressed = session.scalar(
        select(Suppression.reason).where(
            Suppression.channel == message.channel, Suppression.address == address
        )
    )
    if suppressed:
        return f"address suppressed ({suppressed})"
    message.to_address = address
    return None


def finish(
    session: Session,
    message_id: int,
    *,
    status: MessageStatus,
    now: datetime,
    sent_at: datetime | None = None,
    provider_id: str | None = None,
    error: str | None = None,
    cost: Decimal | None = None,
    subject: str | None = None,
    attribution_days: int | None = None,
) -> bool:
    """sending → sent/skipped/failed (compare-and-set on ``sending``)."""
    values: dict[str, Any] = {"status": status, "finished_at": now, "last_error": error}
    if status is MessageStatus.SENT:
        values.update(sent_at=sent_at or now, provider_id=provider_id)
        if attribution_days is not None:
            values["attribute_until"] = (sent_at or now) + timedelta(days=attribution_days)
    if cost is not None:
        values["cost"] = cost
    if status is not MessageStatus.SENT:
        values["cost"] = Decimal("0")
    if subject is not None:
        values["subject"] = subject
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(**values)
    )
    return result.rowcount == 1


def suppress(session: Session, *, channel: Channel, address: str, reason: str, now: datetime) -> None:
    """Add an address to the suppression list (idempotent)."""
    name = session.get_bind().dialect.name
    stmt = (postgresql if name == "postgresql" else sqlite).insert(Suppression).values(
        channel=channel, address=address, reason=reason, created_at=now
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "address"]))


def release(session: Session, message_id: int, *, error: str) -> None:
    """sending → queued after a retryable failure; the broker retries."""
    session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED, last_error=error)
    )


__all__ = [
    "CLAIM_LEASE",
    "PlanCounts",
    "claim",
    "eligible_select",
    "finish",
    "insert",
    "is_held_out",
    "mark_queued",
    "permitted",
    "plan",
    "release",
    "send_refusal",
    "start_run",
    "stranded",
    "sync_rule",
]

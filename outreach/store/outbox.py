"""The outbox: planned messages and their states, written set-based.

Planning is one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per rule over
:func:`eligibility.eligible_select`; ``messages`` is unique on (rule,
customer, occurrence), so planning the same reason twice inserts nothing.
Sending moves each row through explicit states with compare-and-set
updates, so a message the broker delivers twice is claimed once::

    planned → queued → sending → sent | skipped | failed;  held_out (never sent)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Numeric, and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.rules import LoadedRule
from outreach.rules.policy import Policy
from outreach.rules.spec import RuleSpec
from outreach.store import dialect
from outreach.store.eligibility import distinct_timezones, eligible_select
from outreach.store.models import CampaignRun, Message, Rule

#: A worker that claimed a message and went silent this long is presumed dead.
CLAIM_LEASE = timedelta(minutes=15)


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


@dataclass(frozen=True)
class PlanCounts:
    planned: int
    held_out: int


def plan(
    session: Session,
    spec: RuleSpec,
    rule: Rule,
    run: CampaignRun,
    *,
    policy: Policy | None = None,
    segments: dict[str, Any] | None = None,
) -> PlanCounts:
    """Write this run's messages (planned or held_out); existing occurrences
    are left alone, so planning twice plans nothing new."""
    now = run.as_of
    # Evaluated into a temporary table first: the cooldown and cap look-ups
    # then never read the messages this statement is inserting (on an outbox
    # the planner believes empty, that would turn quadratic).
    eligible = dialect.materialize(session, eligible_select(
        spec, rule_id=rule.id, now=now, timezones=distinct_timezones(session),
        policy=policy, segments=segments, lateral=dialect.has_lateral(session),
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
        dialect.insert(session, Message)
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
def rowcount(result: Any) -> int:
    """Rows an UPDATE matched (the compare-and-set succeeded when it is 1)."""
    return int(cast(CursorResult[Any], result).rowcount)


def claim(session: Session, message_id: int, *, now: datetime) -> bool:
    """queued → sending, atomically; False when another delivery got it first."""
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENDING, claimed_at=now, attempts=Message.attempts + 1)
    )
    return rowcount(result) == 1


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
    return rowcount(result) == 1


def release(session: Session, message_id: int, *, error: str) -> None:
    """sending → queued after a retryable failure; the broker retries."""
    session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED, last_error=error)
    )

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
from typing import Any

from sqlalchemy import Numeric, and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.rules import LoadedRule
from outreach.rules.policy import Policy
from outreach.rules.spec import RuleSpec
from outreach.store import campaigns, dialect, holdout
from outreach.store.eligibility import distinct_timezones, eligible_select, transactional_rules
from outreach.store.models import CampaignRun, Message, Rule


def rule_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sync_rule(session: Session, loaded: LoadedRule, now: datetime) -> Rule:
    """Record the rule's current definition (by name) and return its row."""
    spec = loaded.spec
    row = session.scalar(select(Rule).where(Rule.name == spec.name))
    definition = json.loads(spec.model_dump_json(by_alias=True))
    checksum = rule_checksum(loaded.text)
    if row is None:
        # Two commands starting at once (two `outreach run`) may both find no
        # row: the second insert does nothing and reads the first one's row.
        session.execute(dialect.insert(session, Rule).values(
            name=spec.name, path=str(loaded.path), definition=definition, checksum=checksum, updated_at=now,
            assignment=holdout.HASHED,  # a new rule's groups are independent of every other rule's
        ).on_conflict_do_nothing(index_elements=["name"]))
        row = session.scalars(select(Rule).where(Rule.name == spec.name)).one()
    if row.checksum != checksum or row.path != str(loaded.path):
        row.definition, row.checksum, row.path, row.updated_at = (
            definition,
            checksum,
            str(loaded.path),
            now,
        )
    if row.enabled is not spec.enabled or row.transactional is not spec.transactional:
        row.enabled, row.transactional = spec.enabled, spec.transactional
    topic = spec.topic.value if spec.topic else None
    if row.topic != topic:
        row.topic = topic
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
    winner: str | None = None,
) -> PlanCounts:
    """Write this run's messages (planned or held_out); existing occurrences
    are left alone, so planning twice plans nothing new. Groups are drawn with
    the rule's assignment scheme; ``winner``: the variant every treated
    customer gets once the rule's A/B test has one."""
    now = run.as_of
    # Evaluated into a temporary table first: the cooldown and cap look-ups
    # then never read the messages this statement is inserting (on an outbox
    # the planner believes empty, that would turn quadratic).
    eligible = dialect.materialize(session, eligible_select(
        spec, rule_id=rule.id, now=now, timezones=distinct_timezones(session),
        policy=policy, segments=segments, lateral=dialect.has_lateral(session),
        transactional_rules=transactional_rules(session), assignment=rule.assignment, winner=winner,
    ), "outreach_eligible")
    # Sendable now → straight to queued (no second pass over the rows);
    # deferred by quiet hours → planned until its window opens.
    status = case(
        (eligible.c.held_out, literal(MessageStatus.HELD_OUT.value)),
        (eligible.c.not_before.is_not(None), literal(MessageStatus.PLANNED.value)),
        else_=literal(MessageStatus.QUEUED.value),
    )
    queued_at = case(
        # The wall clock of the run (``as_of`` may be a simulated --now): the
        # broker-lost check compares it with the wall clock.
        (and_(~eligible.c.held_out, eligible.c.not_before.is_(None)), literal(run.started_at)), else_=None
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
        eligible.c.variant,
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
                "variant",
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
Queued = tuple[int, int]  # (message id, rule id): what the broker is handed


def queued_of_run(session: Session, run_id: int) -> list[Queued]:
    """A run's messages that planning wrote as ``queued``."""
    return [(int(i), int(r)) for i, r in session.execute(
        select(Message.id, Message.rule_id)
        .where(Message.run_id == run_id, Message.status == MessageStatus.QUEUED)
        .order_by(Message.id))]


def due(session: Session, *, now: datetime, queued_at: datetime, run_id: int | None = None) -> list[Queued]:
    """planned → queued for messages whose time came: a send window opened,
    or the wait after a transient failure is over (``not_before <= now``).
    ``queued_at`` is the wall clock (``now`` may be a simulated ``--now``)."""
    where = [Message.status == MessageStatus.PLANNED, campaigns.sending_allowed(),
             or_(Message.not_before.is_(None), Message.not_before <= now)]
    if run_id is not None:
        where.append(Message.run_id == run_id)
    taken = session.execute(
        update(Message).where(*where).values(status=MessageStatus.QUEUED, queued_at=queued_at)
        .returning(Message.id, Message.rule_id)
    ).all()
    return sorted((int(i), int(r)) for i, r in taken)


def waiting(session: Session, *, queued_before: datetime) -> list[Queued]:
    """Messages ``queued`` since before ``queued_before`` — to hand to the
    broker again when it holds nothing (it lost them: a restart that emptied it).
    Not those of a paused or disabled rule: they wait, and go when it is resumed or enabled."""
    return [(int(i), int(r)) for i, r in session.execute(
        select(Message.id, Message.rule_id)
        .where(Message.status == MessageStatus.QUEUED, Message.queued_at < queued_before,
               campaigns.sending_allowed())
        .order_by(Message.id))]

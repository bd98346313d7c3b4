"""Campaign control and status: pause, resume, cancel, retry, and where a
rule's messages are now.

A paused rule keeps its queued messages queued (workers skip them) and
plans nothing new; resuming hands them to the broker again. Cancelling
ends every message not yet sent (``skipped``, with the reason). Retrying
puts failed messages back in the queue — after a template or provider is
fixed — with a fresh attempt count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, select, update
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.errors import InputError
from outreach.store import variants
from outreach.store.coupons import NO_CODE
from outreach.store.models import Message, Rule

#: The reason cancelled messages carry (``skipped`` with this prefix).
CANCELLED = "cancelled"
#: Statuses of messages that are not finished.
OUTSTANDING = (MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING)


def sending_allowed() -> ColumnElement[bool]:
    """A message's rule is enabled and not paused: the only messages a worker
    claims, a janitor queues or hands to the broker again."""
    return exists().where(Rule.id == Message.rule_id, Rule.enabled.is_(True), Rule.paused_at.is_(None))


def rule_named(session: Session, name: str) -> Rule:
    rule = session.scalar(select(Rule).where(Rule.name == name))
    if rule is None:
        known = ", ".join(session.scalars(select(Rule.name).order_by(Rule.name))) or "none yet"
        raise InputError.single(f"no campaign of a rule named '{name}'", field="RULE",
                                hint=f"rules that have run: {known}")
    return rule


def pause_rule(session: Session, rule_id: int, *, reason: str, now: datetime) -> bool:
    """Pause (True), or nothing when it is paused already (False)."""
    result = session.execute(
        update(Rule).where(Rule.id == rule_id, Rule.paused_at.is_(None)).values(paused_at=now, pause_reason=reason)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def resume(session: Session, name: str) -> list[tuple[int, int]]:
    """Lift a pause; returns the queued (message id, rule id) to hand to the broker again."""
    rule = rule_named(session, name)
    rule.paused_at, rule.pause_reason = None, None
    session.flush()
    return queued_of_rule(session, rule.id)


def queued_of_rule(session: Session, rule_id: int) -> list[tuple[int, int]]:
    """A rule's queued (message id, rule id), to hand to the broker."""
    return [(int(i), rule_id) for i in session.scalars(
        select(Message.id).where(Message.rule_id == rule_id, Message.status == MessageStatus.QUEUED)
        .order_by(Message.id))]


def cancel(session: Session, name: str, *, now: datetime, reason: str) -> int:
    """End every planned or queued message of the rule; returns how many.
    Messages being sent right now finish; sent ones stay sent."""
    rule = rule_named(session, name)
    result = session.execute(
        update(Message)
        .where(Message.rule_id == rule.id, Message.status.in_([MessageStatus.PLANNED, MessageStatus.QUEUED]))
        .values(status=MessageStatus.SKIPPED, finished_at=now, cost=0, last_error=f"{CANCELLED}: {reason}")
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def retry_failed(session: Session, name: str, *, now: datetime) -> list[tuple[int, int]]:
    """Failed messages of the rule back to ``queued`` with a fresh attempt
    count; returns the (message id, rule id) to hand to the broker."""
    rule = rule_named(session, name)
    taken = session.execute(
        update(Message)
        .where(Message.rule_id == rule.id, Message.status == MessageStatus.FAILED)
        .values(status=MessageStatus.QUEUED, queued_at=now, attempts=0, finished_at=None, claimed_by=None,
                last_error=None, not_before=None)
        .returning(Message.id)
    ).scalars().all()
    return sorted((int(i), rule.id) for i in taken)


@dataclass
class Status:
    """Where one rule's messages are."""

    rule: str
    state: str  # active | paused | disabled
    pause_reason: str | None
    counts: dict[str, int] = field(default_factory=dict)  # by status, plus deferred/retrying/cancelled
    sent_last_minute: int = 0
    redelivered: int = 0
    #: How its control group and variants are drawn (``store.holdout``): ``sha256`` or ``legacy``.
    assignment: str = "sha256"
    #: Its A/B test (``store.variants.summaries``): per variant so far, and the decision; None without variants.
    ab_test: dict[str, Any] | None = None

    @property
    def outstanding(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("deferred", "retrying", "queued", "sending"))

    @property
    def rate_per_second(self) -> float:
        return self.sent_last_minute / 60

    @property
    def eta_seconds(self) -> float | None:
        """How long the queued and sending messages take at the last minute's rate."""
        due = self.counts.get("queued", 0) + self.counts.get("sending", 0)
        if not due:
            return 0.0
        return due / self.rate_per_second if self.sent_last_minute else None


def status(session: Session, *, now: datetime, rule: str | None = None) -> list[Status]:
    """Every rule's (or one rule's) messages by status; "deferred" and
    "retrying" split ``planned`` (waiting for a send window, waiting after a
    transient failure); "cancelled" splits ``skipped``, "no code" (an offer's
    pool ran dry) splits ``failed``. ``now`` is the wall clock."""
    rules = session.scalars(select(Rule).order_by(Rule.name) if rule is None
                            else select(Rule).where(Rule.id == rule_named(session, rule).id)).all()
    out = {r.id: Status(rule=r.name, pause_reason=r.pause_reason, assignment=r.assignment,
                        state="paused" if r.paused_at else ("active" if r.enabled else "disabled")) for r in rules}
    tested = [r.id for r in rules if (r.definition or {}).get("variants")]
    for rule_id, summary in variants.summaries(session, tested, now=now).items():
        out[rule_id].ab_test = summary
    each = select(
        Message.rule_id, Message.status, (Message.attempts > 0).label("tried"),
        func.coalesce(Message.last_error, "").like(f"{CANCELLED}:%").label("cancelled"),
        func.coalesce(Message.last_error, "").like(f"{NO_CODE}%").label("no_code"),
        case((Message.redelivered, 1), else_=0).label("redelivered"),
    ).where(Message.rule_id.in_(list(out))).subquery()
    by = (each.c.rule_id, each.c.status, each.c.tried, each.c.cancelled, each.c.no_code)
    rows = session.execute(select(*by, func.count(), func.sum(each.c.redelivered)).group_by(*by)).all()
    for rule_id, state, tried, cancelled, no_code, count, redelivered in rows:
        name = str(state.value if hasattr(state, "value") else state)
        if name == MessageStatus.PLANNED:
            name = "retrying" if tried else "deferred"
        elif name == MessageStatus.SKIPPED and cancelled:
            name = "cancelled"
        elif name == MessageStatus.FAILED and no_code:
            name = "no code"
        entry = out[rule_id]
        entry.counts[name] = entry.counts.get(name, 0) + int(count)
        entry.redelivered += int(redelivered or 0)
    for rule_id, count in session.execute(
        select(Message.rule_id, func.count())
        .where(Message.rule_id.in_(list(out)), Message.status == MessageStatus.SENT,
               Message.finished_at > now - timedelta(minutes=1))
        .group_by(Message.rule_id)
    ):
        out[rule_id].sent_last_minute = int(count)
    return list(out.values())


__all__ = [
    "CANCELLED",
    "OUTSTANDING",
    "Status",
    "cancel",
    "pause_rule",
    "queued_of_rule",
    "resume",
    "retry_failed",
    "rule_named",
    "sending_allowed",
    "status",
]

"""The ROI report: per rule, what was sent, what came back, what it earned.

Attribution is last-touch: an order counts for the most recent message sent to
the customer before it, if the order falls inside that message's attribution
window (``attribute_until``). Lift compares treated customers with the
held-out control group of the same rule over the same window.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, case, distinct, func, select
from sqlalchemy.orm import Session

from outreach.domain import EventType, MessageStatus
from outreach.store.models import Message, Order, Rule, TrackingEvent


@dataclass(frozen=True)
class RuleReport:
    rule: str
    sent: int
    skipped: int
    failed: int
    opens: int
    clicks: int
    unsubscribes: int
    conversions: int
    revenue: Decimal
    cost: Decimal
    held_out: int
    treated_conversion_rate: float | None
    control_conversion_rate: float | None

    @property
    def roi(self) -> float | None:
        if not self.cost:
            return None
        return float((self.revenue - self.cost) / self.cost)

    @property
    def lift(self) -> float | None:
        """Incremental conversion rate, in percentage points."""
        if self.treated_conversion_rate is None or self.control_conversion_rate is None:
            return None
        return (self.treated_conversion_rate - self.control_conversion_rate) * 100


def _attributed(session: Session) -> dict[int, tuple[int, Decimal]]:
    """rule_id → (conversions, revenue), last-touch within the window."""
    touch = (
        select(
            Order.id.label("order_id"),
            Order.amount.label("amount"),
            Message.rule_id.label("rule_id"),
            func.row_number()
            .over(partition_by=Order.id, order_by=(Message.sent_at.desc(), Message.id.desc()))
            .label("rank"),
        )
        .join(Message, Message.customer_id == Order.customer_id)
        .where(
            Message.status == MessageStatus.SENT,
            Message.sent_at < Order.ordered_at,
            Order.ordered_at <= Message.attribute_until,
        )
        .subquery()
    )
    rows = session.execute(
        select(touch.c.rule_id, func.count(), func.coalesce(func.sum(touch.c.amount), 0))
        .where(touch.c.rank == 1)
        .group_by(touch.c.rule_id)
    ).all()
    return {rule_id: (count, Decimal(str(total))) for rule_id, count, total in rows}


def _conversion_rates(session: Session, status: MessageStatus) -> dict[int, float]:
    """rule_id → share of messages (of ``status``) whose customer ordered in the window."""
    start = Message.sent_at if status is MessageStatus.SENT else Message.planned_at
    converted = (
        select(Order.id)
        .where(
            Order.customer_id == Message.customer_id,
            Order.ordered_at > start,
            Order.ordered_at <= Message.attribute_until,
        )
        .exists()
    )
    rows = session.execute(
        select(
            Message.rule_id,
            func.count(),
            func.sum(case((converted, 1), else_=0)),
        )
        .where(Message.status == status)
        .group_by(Message.rule_id)
    ).all()
    return {rule_id: (hits or 0) / total for rule_id, total, hits in rows if total}


def build_report(engine: Engine) -> list[RuleReport]:
    with Session(engine) as session:
        by_status = {
            (rule_id, status): (count, Decimal(str(cost or 0)))
            for rule_id, status, count, cost in session.execute(
                select(Message.rule_id, Message.status, func.count(), func.sum(Message.cost))
                .group_by(Message.rule_id, Message.status)
            ).all()
        }
        events = {
            (rule_id, kind): count
            for rule_id, kind, count in session.execute(
                select(Message.rule_id, TrackingEvent.type, func.count(distinct(Message.id)))
                .join(TrackingEvent, TrackingEvent.message_id == Message.id)
                .where(
                    TrackingEvent.type.in_(
                        [EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE]
                    )
                )
                .group_by(Message.rule_id, TrackingEvent.type)
            ).all()
        }
        attributed = _attributed(session)
        treated = _conversion_rates(session, MessageStatus.SENT)
        control = _conversion_rates(session, MessageStatus.HELD_OUT)
        reports = []
        for rule in session.scalars(select(Rule).order_by(Rule.name)):
            sent, cost = by_status.get((rule.id, MessageStatus.SENT), (0, Decimal("0")))
            conversions, revenue = attributed.get(rule.id, (0, Decimal("0")))
            reports.append(
                RuleReport(
                    rule=rule.name,
                    sent=sent,
                    skipped=by_status.get((rule.id, MessageStatus.SKIPPED), (0, 0))[0],
                    failed=by_status.get((rule.id, MessageStatus.FAILED), (0, 0))[0],
                    opens=events.get((rule.id, EventType.OPEN), 0),
                    clicks=events.get((rule.id, EventType.CLICK), 0),
                    unsubscribes=events.get((rule.id, EventType.UNSUBSCRIBE), 0),
                    conversions=conversions,
                    revenue=revenue,
                    cost=cost,
                    held_out=by_status.get((rule.id, MessageStatus.HELD_OUT), (0, 0))[0],
                    treated_conversion_rate=treated.get(rule.id),
                    control_conversion_rate=control.get(rule.id),
                )
            )
        return reports


def render_table(reports: list[RuleReport], *, currency: str = "CNY") -> object:
    from rich.table import Table

    table = Table(title="Campaign ROI (last-touch attribution within each rule's window)")
    for name in (
        "Rule", "Sent", "Opens", "Clicks", "Unsubs", "Conv.", f"Revenue {currency}",
        f"Cost {currency}", "ROI", "Held out", "Conv% sent", "Conv% control", "Lift pp",
    ):
        table.add_column(name, justify="left" if name == "Rule" else "right")
    for r in reports:
        table.add_row(
            r.rule,
            str(r.sent),
            str(r.opens),
            str(r.clicks),
            str(r.unsubscribes),
            str(r.conversions),
            f"{r.revenue:,.2f}",
            f"{r.cost:,.2f}",
            "n/a" if r.roi is None else f"{r.roi:,.1f}x",
            str(r.held_out),
            _pct(r.treated_conversion_rate),
            _pct(r.control_conversion_rate),
            "n/a" if r.lift is None else f"{r.lift:+.1f}",
        )
    return table


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


__all__ = ["RuleReport", "build_report", "render_table"]

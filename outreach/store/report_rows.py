"""What the ROI report adds up besides the arms of each rule
(``store.variants.variant_outcomes``): the funnel, last-touch attribution,
revenue over time, the orders left out for want of a rate, and the
simulated rows counted. Each is one grouped statement over the messages of
the period (``period``), never a loop per rule or per message.

Money: ``converted_amount(rates)`` is the SQL expression that turns an
order's amount into the reporting currency (a CASE over its currency);
``known_currency(rates)`` selects the orders that have a rate. Orders in
another currency are counted only in :func:`orders_in_windows`, by currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, literal, select, true
from sqlalchemy.orm import Session

from outreach.domain import EventType, MessageStatus
from outreach.store.models import Customer, CustomerStats, Message, Order, Rule, TrackingEvent, VariantDecision
from outreach.store.variants import MONEY

#: The source of demo orders (``orders.source``): counted, and labelled as simulated.
SIMULATED_SOURCE = "simulated"
#: Events the funnel counts (distinct messages with at least one).
FUNNEL_EVENTS = (EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE)


def converted_amount(rates: Mapping[str, Decimal]) -> ColumnElement[Any]:
    """An order's amount in the reporting currency: ``amount × rate`` of its
    currency (``rates``: currency → value of one unit; NULL without a rate)."""
    return case(*[(Order.currency == code, Order.amount * literal(rate, MONEY)) for code, rate in rates.items()],
                else_=None)


def known_currency(rates: Mapping[str, Decimal]) -> ColumnElement[bool]:
    return Order.currency.in_(list(rates))


def period(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """Messages planned in [since, until) (either end open when None)."""
    ends = [c for c in (Message.planned_at >= since if since else None,
                        Message.planned_at < until if until else None) if c is not None]
    return and_(true(), *ends)


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value or 0))


# ------------------------------------------------------------------ funnel
@dataclass(frozen=True)
class FunnelRows:
    #: (rule id, variant, status) → messages.
    statuses: dict[tuple[int, str | None, MessageStatus], int]
    #: (rule id, variant) → what its sent messages cost (``messages.cost``, the reporting currency).
    cost: dict[tuple[int, str | None], Decimal]
    #: (rule id, event type) → distinct messages with such an event.
    events: dict[tuple[int, EventType], int]
    #: rule id → simulated tracking events of its messages.
    simulated_events: dict[int, int]

    def count(self, rule_id: int, status: MessageStatus) -> int:
        return sum(n for (rule, _, state), n in self.statuses.items() if rule == rule_id and state == status)


def funnel(session: Session, *, messages: ColumnElement[bool]) -> FunnelRows:
    """Messages per rule, variant and status, the cost of the sent ones, and
    the messages with an open, click or unsubscribe (two statements)."""
    statuses: dict[tuple[int, str | None, MessageStatus], int] = {}
    cost: dict[tuple[int, str | None], Decimal] = {}
    for rule_id, variant, status, count, spent in session.execute(
            select(Message.rule_id, Message.variant, Message.status, func.count(),
                   func.sum(Message.cost, type_=MONEY))
            .where(messages).group_by(Message.rule_id, Message.variant, Message.status)):
        statuses[(int(rule_id), variant, MessageStatus(status))] = int(count)
        if status == MessageStatus.SENT:
            cost[(int(rule_id), variant)] = _decimal(spent)
    events: dict[tuple[int, EventType], int] = {}
    simulated: dict[int, int] = {}
    for rule_id, kind, count, fake in session.execute(
            select(Message.rule_id, TrackingEvent.type, func.count(distinct(Message.id)),
                   func.sum(case((TrackingEvent.simulated, 1), else_=0)))
            .join(TrackingEvent, TrackingEvent.message_id == Message.id).where(messages)
            .group_by(Message.rule_id, TrackingEvent.type)):
        if EventType(kind) in FUNNEL_EVENTS:
            events[(int(rule_id), EventType(kind))] = int(count)
        simulated[int(rule_id)] = simulated.get(int(rule_id), 0) + int(fake or 0)
    return FunnelRows(statuses, cost, events, simulated)


def rules_of(session: Session, rule_ids: Sequence[int]) -> list[tuple[int, str, dict[str, Any], str | None]]:
    """(id, name, definition, the A/B winner decided or None) of these rules, by name."""
    winners = dict(session.execute(select(VariantDecision.rule_id, VariantDecision.winner)
                                   .where(VariantDecision.rule_id.in_(list(rule_ids)))).all())
    return [(int(rule.id), rule.name, dict(rule.definition or {}), winners.get(rule.id))
            for rule in session.scalars(select(Rule).where(Rule.id.in_(list(rule_ids))).order_by(Rule.name))]


#: The dimensions the report splits by: columns of messages, customers, customer_stats.
SPLITS: dict[str, ColumnElement[Any]] = {
    "channel": Message.channel.expression, "customer_type": Customer.customer_type.expression,
    "lifecycle_stage": CustomerStats.lifecycle_stage.expression, "rfm_segment": CustomerStats.rfm_segment.expression,
    "value_tier": CustomerStats.value_tier.expression, "locale": Customer.locale.expression,
}


# ------------------------------------------------------------------ last touch
def last_touch(session: Session, *, messages: ColumnElement[bool], amount: ColumnElement[Any],
               orders: ColumnElement[bool]) -> dict[int, tuple[int, Decimal]]:
    """rule id → (orders, revenue) attributed last-touch: each order (of those
    ``orders`` selects) to the customer's latest sent message before it whose
    window it falls in."""
    touch = (
        select(Order.id.label("order_id"), amount.label("amount"), Message.rule_id.label("rule_id"),
               func.row_number().over(partition_by=Order.id, order_by=(Message.sent_at.desc(), Message.id.desc()))
               .label("rank"))
        .join(Message, Message.customer_id == Order.customer_id)
        .where(Message.status == MessageStatus.SENT, messages, orders, Message.sent_at < Order.ordered_at,
               Order.ordered_at <= Message.attribute_until)
        .subquery("touch")
    )
    return {int(rule_id): (int(count), _decimal(total)) for rule_id, count, total in session.execute(
        select(touch.c.rule_id, func.count(), func.sum(touch.c.amount, type_=MONEY))
        .where(touch.c.rank == 1).group_by(touch.c.rule_id))}


# ------------------------------------------------------------------ orders inside measured windows
def _in_windows(messages: ColumnElement[bool]) -> Any:
    """Each (order, rule, group) once: orders inside a measured message's window."""
    held = Message.status == MessageStatus.HELD_OUT
    start = case((held, Message.planned_at), else_=Message.sent_at)
    return (
        select(Order.id.label("order_id"), Order.ordered_at.label("ordered_at"), Order.currency.label("currency"),
               Order.amount.label("amount"), Order.source.label("source"), Message.rule_id.label("rule_id"),
               held.label("held_out"))
        .join(Message, Message.customer_id == Order.customer_id)
        .where(Message.status.in_([MessageStatus.SENT, MessageStatus.HELD_OUT]), messages,
               Order.ordered_at > start, Order.ordered_at <= Message.attribute_until)
        .distinct()
    )


@dataclass(frozen=True)
class DayRow:
    day: date
    rule_id: int
    held_out: bool
    orders: int
    revenue: Decimal
    simulated_orders: int


def timeline(session: Session, *, messages: ColumnElement[bool], rates: Mapping[str, Decimal]) -> list[DayRow]:
    """Per day × rule × group (treated, control): the orders inside a measured
    window of the rule (each order once per rule and group) and their revenue
    in the reporting currency; orders without a rate are left out."""
    inside = _in_windows(messages).where(known_currency(rates)).subquery("inside")
    rate = case(*[(inside.c.currency == code, literal(value, MONEY)) for code, value in rates.items()], else_=None)
    day = func.date(inside.c.ordered_at)
    rows = session.execute(
        select(day, inside.c.rule_id, inside.c.held_out, func.count(),
               func.sum(inside.c.amount * rate, type_=MONEY),
               func.sum(case((inside.c.source == SIMULATED_SOURCE, 1), else_=0)))
        .group_by(day, inside.c.rule_id, inside.c.held_out).order_by(day, inside.c.rule_id, inside.c.held_out))
    return [DayRow(date.fromisoformat(str(when)[:10]), int(rule_id), bool(held), int(count), _decimal(revenue),
                   int(fake or 0)) for when, rule_id, held, count, revenue, fake in rows]


@dataclass(frozen=True)
class CurrencyRow:
    currency: str
    orders: int
    amount: Decimal
    simulated_orders: int


def orders_in_windows(session: Session, *, messages: ColumnElement[bool]) -> list[CurrencyRow]:
    """Per currency, the distinct orders inside some measured window (of any
    rule): their count, amount in that currency, and how many are simulated."""
    inside = _in_windows(messages).subquery("inside")
    each = select(inside.c.order_id, inside.c.currency, inside.c.amount, inside.c.source).distinct().subquery("each")
    return [CurrencyRow(str(currency), int(count), _decimal(total), int(fake or 0))
            for currency, count, total, fake in session.execute(
                select(each.c.currency, func.count(), func.sum(each.c.amount, type_=MONEY),
                       func.sum(case((each.c.source == SIMULATED_SOURCE, 1), else_=0)))
                .group_by(each.c.currency).order_by(each.c.currency))]


__all__ = ["SIMULATED_SOURCE", "SPLITS", "CurrencyRow", "DayRow", "FunnelRows", "converted_amount", "funnel",
           "known_currency", "last_touch", "orders_in_windows", "period", "rules_of", "timeline"]

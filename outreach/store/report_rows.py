"""What the ROI report adds up besides the arms of each rule
(``store.variants.variant_outcomes``): the funnel, last-touch attribution,
revenue over time, the orders left out for want of a rate, and the
simulated rows counted. Each is one grouped statement over the messages of
the report's scope (``variants.Scope``: a period of plan times) or over the
pairs (measured message, order inside its window) the database keeps in
``window_orders`` (migration 0020), never a loop per rule or per message.

Money: ``variants.pair_amount(rates)`` turns an order's amount into the
reporting currency (a CASE over its currency) and selects the orders that have
a rate. Orders in another currency are counted only in
:func:`exceptions`, by currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, false, func, or_, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from outreach.domain import EventType, MessageStatus
from outreach.store import dialect
from outreach.store.models import Customer, CustomerStats, Message, Rule, TrackingEvent, VariantDecision
from outreach.store.variants import MONEY, Scope, StatusCount, pair_amount
from outreach.store.window_rows import WindowOrder

#: The source of demo orders (``orders.source``): counted, and labelled as simulated.
SIMULATED_SOURCE = "simulated"
#: Events the funnel counts (distinct messages with at least one).
FUNNEL_EVENTS = (EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE)


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


def funnel(session: Session, *, scope: Scope,
           counts: Mapping[tuple[int, str | None, MessageStatus], StatusCount]) -> FunnelRows:
    """The funnel from the messages per rule, variant and status
    (``variants.message_counts`` of ``scope``), and the messages with an open,
    click or unsubscribe (one statement over the events, which carry their
    message's rule and plan time: migration 0021)."""
    statuses = {key: count.messages for key, count in counts.items()}
    cost = {(rule_id, variant): count.cost for (rule_id, variant, status), count in counts.items()
            if status is MessageStatus.SENT}
    events: dict[tuple[int, EventType], int] = {}
    simulated: dict[int, int] = {}
    for rule_id, kind, count, fake in session.execute(
            select(TrackingEvent.rule_id, TrackingEvent.type, func.count(distinct(TrackingEvent.message_id)),
                   func.sum(case((TrackingEvent.simulated, 1), else_=0)))
            .where(TrackingEvent.message_id.is_not(None), *scope.of(TrackingEvent.rule_id, TrackingEvent.planned_at))
            .group_by(TrackingEvent.rule_id, TrackingEvent.type)):
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
def last_touch(session: Session, *, scope: Scope, rates: Mapping[str, Decimal]) -> dict[int, tuple[int, Decimal]]:
    """rule id → (orders, revenue) attributed last-touch: each order (with a
    rate in ``rates``) to the customer's latest sent message before it whose
    window it falls in (among the messages in ``scope``)."""
    amount, known = pair_amount(rates)
    latest = (WindowOrder.sent_at.desc(), WindowOrder.message_id.desc())
    sent = select(WindowOrder.order_id, amount.label("amount"), WindowOrder.rule_id).where(
        WindowOrder.held_out == false(), *scope.pairs, *known)
    last: ColumnElement[bool]
    if dialect.is_postgresql(session):
        # One sort, the first row of each order kept (half the time of ranking every row).
        touch = sent.ext(distinct_on(WindowOrder.order_id)).order_by(WindowOrder.order_id, *latest).subquery("touch")
        last = true()
    else:
        touch = sent.add_columns(func.row_number().over(partition_by=WindowOrder.order_id, order_by=latest)
                                 .label("rank")).subquery("touch")
        last = touch.c.rank == 1
    return {int(rule_id): (int(count), _decimal(total)) for rule_id, count, total in session.execute(
        select(touch.c.rule_id, func.count(), func.sum(touch.c.amount, type_=MONEY))
        .where(last).group_by(touch.c.rule_id))}


# ------------------------------------------------------------------ orders inside measured windows
@dataclass(frozen=True)
class DayRow:
    day: date
    rule_id: int
    held_out: bool
    orders: int
    revenue: Decimal
    simulated_orders: int


def timeline(session: Session, *, scope: Scope, rates: Mapping[str, Decimal]) -> list[DayRow]:
    """Per day × rule × group (treated, control): the orders inside a measured
    window of the rule (each order once per rule and group) and their revenue
    in the reporting currency; orders without a rate are left out."""
    amount, known = pair_amount(rates)
    inside = (select(WindowOrder.order_id, WindowOrder.ordered_at, amount.label("amount"), WindowOrder.source,
                     WindowOrder.rule_id, WindowOrder.held_out)
              .where(*scope.pairs, *known).distinct().subquery("inside"))
    day = func.date(inside.c.ordered_at)
    rows = session.execute(
        select(day, inside.c.rule_id, inside.c.held_out, func.count(), func.sum(inside.c.amount, type_=MONEY),
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


@dataclass(frozen=True)
class Exceptions:
    """What the report must say of the orders inside measured windows besides
    adding them up: those in a currency without a rate (left out), and the
    simulated ones (counted, and labelled)."""

    #: Per currency without a rate: the distinct orders, their amount in it, how many are simulated.
    unconverted: list[CurrencyRow]
    #: Distinct simulated orders inside some measured window (every currency).
    simulated_orders: int
    #: rule id → its simulated orders with a rate (each once per rule and group, as the timeline counts them).
    simulated_by_rule: dict[int, int]


def exceptions(session: Session, *, scope: Scope, rates: Mapping[str, Decimal]) -> Exceptions:
    """Two grouped statements over the pairs in a currency without a rate or
    simulated — none in a live shop's report, so each is one filtered scan."""
    odd = or_(WindowOrder.currency.not_in(list(rates)), WindowOrder.source == SIMULATED_SOURCE)
    each = (select(WindowOrder.order_id, WindowOrder.currency, WindowOrder.amount, WindowOrder.source)
            .where(*scope.pairs, odd).distinct().subquery("each"))
    unconverted, simulated = [], 0
    for currency, count, total, fake in session.execute(
            select(each.c.currency, func.count(), func.sum(each.c.amount, type_=MONEY),
                   func.sum(case((each.c.source == SIMULATED_SOURCE, 1), else_=0)))
            .group_by(each.c.currency).order_by(each.c.currency)):
        simulated += int(fake or 0)
        if currency not in rates:
            unconverted.append(CurrencyRow(str(currency), int(count), _decimal(total), int(fake or 0)))
    fake_pairs = (select(WindowOrder.order_id, WindowOrder.rule_id, WindowOrder.held_out)
                  .where(*scope.pairs, WindowOrder.source == SIMULATED_SOURCE, WindowOrder.currency.in_(list(rates)))
                  .distinct().subquery("fake"))
    by_rule = {int(rule_id): int(count) for rule_id, count in session.execute(
        select(fake_pairs.c.rule_id, func.count()).group_by(fake_pairs.c.rule_id))}
    return Exceptions(unconverted, simulated, by_rule)


__all__ = ["SIMULATED_SOURCE", "SPLITS", "CurrencyRow", "DayRow", "Exceptions", "FunnelRows", "exceptions", "funnel",
           "last_touch", "rules_of", "timeline"]

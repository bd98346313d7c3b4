"""What each arm of a rule did — its A/B variants and its control group —
added up by the database, and the decisions that ended A/B tests.

:func:`variant_outcomes` is the data the ROI report shows per rule × variant:
for each arm, how many messages it was given, how many were sent, and over
its *measured* messages (the sent ones; for the control group, the held-out
ones) how many were followed by an order of the customer inside the
message's attribution window, with the revenue of those orders summed and
summed in squares (per message), so means and Welch's intervals follow
(``outreach.stats``). :func:`first_sends` is the fixed sample the automatic
winner is decided on (``outreach.planning.abtest``).

The attribution window of a sent message runs from ``sent_at`` to
``attribute_until``; of a held-out one, from ``planned_at`` (when it would
have been sent) to ``attribute_until`` — the same windows as the report's
conversion rates of treated and control customers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, and_, case, func, join, select, true
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.stats import Sums, rate_difference
from outreach.store import dialect
from outreach.store.models import Message, Order, Rule, VariantDecision

#: The types sums are read back as (SQLite returns floating point; these keep
#: the digits a converted amount and a square of it have, instead of an amount's 2).
MONEY = Numeric(30, 6)
SQUARES = Numeric(38, 8)


@dataclass(frozen=True)
class VariantOutcome:
    """One arm of one rule."""

    rule_id: int
    rule: str
    #: The A/B variant; None for the control group and for a rule without variants.
    variant: str | None
    #: The control group (planned, never sent): ``variant`` is None.
    held_out: bool
    #: Messages in this arm, whatever their status.
    assigned: int
    #: Of which sent (0 for the control group).
    sent: int
    #: What conversions and revenue are counted over: sent messages, or the held-out ones.
    measured: int
    #: Measured messages followed by an order of the customer inside their window.
    converted: int
    #: Order amounts inside the measured messages' windows (``amount``), and the sum of each message's square.
    revenue: Decimal
    revenue_squares: Decimal
    #: Measured messages whose window is still open at ``now`` (their figures may still grow).
    open_windows: int

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.measured if self.measured else None

    @property
    def revenue_sums(self) -> Sums:
        """Revenue per measured message as count, sum and sum of squares (``stats.mean_difference``)."""
        return Sums(self.measured, float(self.revenue), float(self.revenue_squares))


def _window(customer_id: Any, start: Any, end: Any, amount: ColumnElement[Any] | None,
            ) -> tuple[ColumnElement[int], ColumnElement[Decimal]]:
    """(1 if the customer ordered inside (start, end] else 0, the amount they ordered there)."""
    inside = and_(Order.customer_id == customer_id, Order.ordered_at > start, Order.ordered_at <= end)
    ordered = select(Order.id).where(inside).exists()
    spent = select(func.coalesce(func.sum(_amount(amount)), 0)).where(inside).scalar_subquery()
    return case((ordered, 1), else_=0), spent


def _per_message(session: Session, amount: ColumnElement[Any] | None, rule_ids: Sequence[int] | None) -> Any:
    """One row per message: its rule, variant, whether held out, sent and
    measured, whether its customer ordered inside its window, the amount
    they ordered there, and the end of its window if measured (``until``)."""
    chosen = [Message.rule_id.in_(list(rule_ids))] if rule_ids is not None else []
    if dialect.has_lateral(session):
        # The messages in customer order (read from the per-customer index
        # alone, 0018), so that the one look-up of each measured message's
        # orders — counted and summed together in the covering (customer,
        # time, amount) index — reads that index's pages in order, not at
        # random (4× at 10M orders; as correlated subqueries the look-up was
        # made once for the EXISTS and once per use of the sum: 4 a message).
        by_customer = select(*(getattr(Message, c) for c in _WINDOW_COLUMNS)).where(*chosen).order_by(
            Message.customer_id).subquery("by_customer")
        m: Any = by_customer.c
        held, measured, start = _arm(m)
        inside = (select(func.count().label("orders"), func.coalesce(func.sum(_amount(amount)), 0).label("spent"))
                  .where(measured, Order.customer_id == m.customer_id, Order.ordered_at > start,
                         Order.ordered_at <= m.attribute_until).lateral("inside_window"))
        converted: ColumnElement[int] = case((inside.c.orders > 0, 1), else_=0)
        spent: ColumnElement[Any] = inside.c.spent
        source: Any = join(by_customer, inside, true())
        chosen = []
    else:
        m, source = Message, Message
        held, measured, start = _arm(m)
        ordered, amount_in = _window(m.customer_id, start, m.attribute_until, amount)
        converted, spent = case((measured, ordered), else_=0), case((measured, amount_in), else_=0)
    return (select(m.rule_id, m.variant, held.label("held_out"), (m.status == MessageStatus.SENT).label("sent"),
                   measured.label("measured"), converted.label("converted"), spent.label("revenue"),
                   case((measured, m.attribute_until), else_=None).label("until"))
            .select_from(source).where(*chosen).subquery("per_message"))


#: What the report reads of a message (all in ``ix_messages_customer_planned``, 0018).
_WINDOW_COLUMNS = ("rule_id", "variant", "status", "customer_id", "planned_at", "sent_at", "attribute_until")


def _arm(m: Any) -> tuple[ColumnElement[bool], ColumnElement[bool], ColumnElement[Any]]:
    """(held out, measured, the start of the window) of the messages ``m`` (the model or a subquery's columns)."""
    held = m.status == MessageStatus.HELD_OUT
    return (held, m.status.in_([MessageStatus.SENT, MessageStatus.HELD_OUT]),
            case((held, m.planned_at), else_=m.sent_at))


def _amount(amount: ColumnElement[Any] | None) -> ColumnElement[Any]:
    return Order.__table__.c.amount if amount is None else amount


def variant_outcomes(session: Session, *, now: datetime, rule_ids: Sequence[int] | None = None,
                     amount: ColumnElement[Any] | None = None) -> list[VariantOutcome]:
    """Per rule × arm (each variant, the control group; a rule without
    variants has one treated arm, ``variant`` None): assigned, sent,
    measured, converted, revenue and its squares. ``rule_ids``: only those
    rules; ``amount``: an expression over ``orders`` to sum instead of
    ``Order.amount`` (a currency conversion, a margin)."""
    per = _per_message(session, amount, rule_ids)
    # Added up per arm first, the rules' names joined to the few sums after.
    arms = (
        select(per.c.rule_id, per.c.variant, per.c.held_out, func.count().label("assigned"),
               func.sum(case((per.c.sent, 1), else_=0)).label("sent"),
               func.sum(case((per.c.measured, 1), else_=0)).label("measured"),
               func.sum(per.c.converted).label("converted"), func.sum(per.c.revenue, type_=MONEY).label("revenue"),
               func.sum(per.c.revenue * per.c.revenue, type_=SQUARES).label("squares"),
               func.sum(case((per.c.until > now, 1), else_=0)).label("open"))
        .group_by(per.c.rule_id, per.c.variant, per.c.held_out).subquery("arms")
    )
    query = (select(arms.c.rule_id, Rule.name, arms.c.variant, arms.c.held_out, arms.c.assigned, arms.c.sent,
                    arms.c.measured, arms.c.converted, arms.c.revenue, arms.c.squares, arms.c.open)
             .join(Rule, Rule.id == arms.c.rule_id).order_by(Rule.name, arms.c.held_out, arms.c.variant))
    if rule_ids is None and dialect.has_lateral(session):
        # Every message: PostgreSQL would rather sort them (in parallel) than
        # read the index in order, which is slower (5M: 5 s of sorting).
        # Some rules' messages are found by rule and sorted, as it chooses.
        with _without_sorting(session):
            rows = session.execute(query).all()
    else:
        rows = session.execute(query).all()
    return [VariantOutcome(rule_id=int(rule_id), rule=name, variant=variant, held_out=bool(is_held),
                           assigned=int(count), sent=int(sent or 0), measured=int(counted or 0),
                           converted=int(conv or 0), revenue=_decimal(revenue), revenue_squares=_decimal(squares),
                           open_windows=int(still_open or 0))
            for rule_id, name, variant, is_held, count, sent, counted, conv, revenue, squares, still_open in rows]


@contextmanager
def _without_sorting(session: Session) -> Iterator[None]:
    """PostgreSQL plans the statements run inside without a sort where an index gives the order.
    (The setting is the transaction's: one that fails inside is rolled back, and the setting with it.)"""
    before = session.scalar(select(func.current_setting("enable_sort")))
    session.execute(select(func.set_config("enable_sort", "off", True)))
    yield
    session.execute(select(func.set_config("enable_sort", before, True)))


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value or 0))


# ------------------------------------------------------------------ the automatic winner's sample
@dataclass(frozen=True)
class Sample:
    """The first sends of one variant (by message id, up to the test's size)."""

    variant: str
    n: int
    converted: int
    revenue: Decimal
    revenue_squares: Decimal
    #: The last of these windows closes (None: no sends yet).
    closes: datetime | None

    def complete(self, size: int, now: datetime) -> bool:
        """The sample has its size and every window in it has closed."""
        return self.n >= size and self.closes is not None and self.closes <= now


def first_sends(session: Session, rule_id: int, *, size: int, variants: Sequence[str]) -> list[Sample]:
    """Each of ``variants``' first ``size`` sent messages (by id: the order
    they were planned, which does not depend on how they turned out), with
    their conversions and revenue inside their windows."""
    ranked = (
        select(Message.variant, Message.customer_id, Message.sent_at, Message.attribute_until,
               func.row_number().over(partition_by=Message.variant, order_by=Message.id).label("k"))
        .where(Message.rule_id == rule_id, Message.status == MessageStatus.SENT, Message.variant.in_(list(variants)))
        .subquery("ranked")
    )
    converted, spent = _window(ranked.c.customer_id, ranked.c.sent_at, ranked.c.attribute_until, None)
    per = select(ranked.c.variant, ranked.c.attribute_until, converted.label("converted"),
                 spent.label("revenue")).where(ranked.c.k <= size).subquery("sample")
    found = {
        variant: Sample(variant=variant, n=int(n), converted=int(conv or 0), revenue=_decimal(revenue),
                        revenue_squares=_decimal(squares), closes=closes)
        for variant, n, conv, revenue, squares, closes in session.execute(
            select(per.c.variant, func.count(), func.sum(per.c.converted), func.sum(per.c.revenue, type_=MONEY),
                   func.sum(per.c.revenue * per.c.revenue, type_=SQUARES), func.max(per.c.attribute_until))
            .group_by(per.c.variant))
    }
    return [found.get(v, Sample(variant=v, n=0, converted=0, revenue=Decimal(0), revenue_squares=Decimal(0),
                                closes=None)) for v in variants]


# ------------------------------------------------------------------ decisions
def decision_of(session: Session, rule_id: int | None) -> VariantDecision | None:
    return None if rule_id is None else session.get(VariantDecision, rule_id)


def winner_in_force(decision: VariantDecision | None, variants: Sequence[str]) -> str | None:
    """The variant every treated customer gets: the decided winner while it is
    still one of the rule's variants (a rule edited since may have dropped it)."""
    if decision is None or decision.winner is None:
        return None
    return decision.winner if decision.winner in variants else None


def record_decision(session: Session, rule_id: int, *, decided_at: datetime, winner: str | None, metric: str,
                    sample_per_variant: int, confidence: float, reason: str, results: dict[str, Any]) -> None:
    """Write the decision that ended a rule's test (once: a second one for the rule is not written)."""
    if session.get(VariantDecision, rule_id) is not None:
        return
    session.add(VariantDecision(rule_id=rule_id, decided_at=decided_at, winner=winner, metric=metric,
                                sample_per_variant=sample_per_variant, confidence=confidence, reason=reason,
                                results=results))
    session.flush()


def summaries(session: Session, rule_ids: Sequence[int], *, now: datetime) -> dict[int, dict[str, Any]]:
    """What ``campaign status`` says of each A/B test: per variant (and the
    control group) assigned, sent, converted and revenue so far, each
    variant's conversion lift over the control group with its interval, and
    the decision that ended it (winner, when, why) if one did."""
    found: dict[int, dict[str, Any]] = {rule_id: {"variants": [], "decision": None} for rule_id in rule_ids}
    if not rule_ids:
        return found
    arms = variant_outcomes(session, now=now, rule_ids=rule_ids)
    control = {arm.rule_id: arm for arm in arms if arm.held_out}
    for arm in arms:
        base = control.get(arm.rule_id)
        lift = None if arm.held_out or base is None else rate_difference(
            arm.converted, arm.measured, base.converted, base.measured)
        found[arm.rule_id]["variants"].append({
            "variant": arm.variant, "held_out": arm.held_out, "assigned": arm.assigned, "sent": arm.sent,
            "measured": arm.measured, "converted": arm.converted, "conversion_rate": arm.conversion_rate,
            "revenue": arm.revenue, "open_windows": arm.open_windows,
            # The conversion rate minus the control group's, with its 95 % interval (Newcombe).
            "lift_vs_control": None if lift is None else {"estimate": lift.estimate, "low": lift.low,
                                                          "high": lift.high}})
    for decision in session.scalars(select(VariantDecision).where(VariantDecision.rule_id.in_(list(rule_ids)))):
        found[decision.rule_id]["decision"] = {
            "winner": decision.winner, "decided_at": decision.decided_at, "reason": decision.reason,
            "metric": decision.metric, "sample_per_variant": decision.sample_per_variant,
            "confidence": decision.confidence}
    return found


__all__ = ["Sample", "VariantOutcome", "decision_of", "first_sends", "record_decision", "summaries",
           "variant_outcomes", "winner_in_force"]

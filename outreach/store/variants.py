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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, and_, case, func, literal, select
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.stats import Sums, rate_difference
from outreach.store.models import Customer, CustomerStats, Message, Rule, VariantDecision
from outreach.store.window_rows import WindowOrder

#: The types sums are read back as (SQLite returns floating point; these keep
#: the digits a converted amount and a square of it have, instead of an amount's 2).
MONEY = Numeric(30, 6)
SQUARES = Numeric(38, 8)
#: The statuses whose messages are measured: sent, and held out (the control group).
MEASURED = (MessageStatus.SENT, MessageStatus.HELD_OUT)


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
    #: The values of the extra grouping asked for (``by``), e.g. ``("email", "retail")``; ``()`` without.
    group: tuple[Any, ...] = ()

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.measured if self.measured else None

    @property
    def revenue_sums(self) -> Sums:
        """Revenue per measured message as count, sum and sum of squares (``stats.mean_difference``)."""
        return Sums(self.measured, float(self.revenue), float(self.revenue_squares))


# ------------------------------------------------------------------ what the arms are added up from
@dataclass(frozen=True)
class Scope:
    """Which messages count: those of ``rule_ids`` (None: every rule) planned
    in [since, until) (either end open when None). The same filter applies to
    ``messages`` and to the pairs (``window_orders``), which carry the rule and
    the plan time of their message."""

    rule_ids: Sequence[int] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def of(self, rule_id: Any, planned_at: Any) -> list[ColumnElement[bool]]:
        return [c for c in (rule_id.in_(list(self.rule_ids)) if self.rule_ids is not None else None,
                            planned_at >= self.since if self.since else None,
                            planned_at < self.until if self.until else None) if c is not None]

    @property
    def messages(self) -> list[ColumnElement[bool]]:
        return self.of(Message.rule_id, Message.planned_at)

    @property
    def pairs(self) -> list[ColumnElement[bool]]:
        return self.of(WindowOrder.rule_id, WindowOrder.planned_at)


def pair_amount(rates: Mapping[str, Decimal] | None) -> tuple[ColumnElement[Any], list[ColumnElement[bool]]]:
    """(an order's amount in the reporting currency, the condition that it has
    a rate) over ``window_orders``; ``rates`` None: the amount as it is, every
    currency."""
    if rates is None:
        return WindowOrder.amount.expression, []
    converted = case(*[(WindowOrder.currency == code, WindowOrder.amount * literal(rate, MONEY))
                       for code, rate in rates.items()], else_=None)
    return converted, [WindowOrder.currency.in_(list(rates))]


def rule_names(session: Session, rule_ids: Iterable[int]) -> dict[int, str]:
    """rule id → name, for sums grouped by id (grouping by the name would sort every row by it)."""
    return dict(session.execute(select(Rule.id, Rule.name).where(Rule.id.in_(set(rule_ids)))).all())


@dataclass(frozen=True)
class StatusCount:
    messages: int
    #: What they cost (``messages.cost``).
    cost: Decimal
    #: Of which with a window still open at ``now``.
    open_windows: int


def message_counts(session: Session, scope: Scope, *, now: datetime,
                   ) -> dict[tuple[int, str | None, MessageStatus], StatusCount]:
    """(rule id, variant, status) → messages, their cost, their windows still
    open at ``now``: one grouped pass over the messages in ``scope``."""
    return {(int(rule_id), variant, MessageStatus(status)): StatusCount(int(n), _decimal(cost), int(still or 0))
            for rule_id, variant, status, n, cost, still in session.execute(
                select(Message.rule_id, Message.variant, Message.status, func.count(),
                       func.sum(Message.cost, type_=MONEY),
                       func.sum(case((Message.attribute_until > now, 1), else_=0)))
                .where(*scope.messages).group_by(Message.rule_id, Message.variant, Message.status))}


def spent_per_message(scope: Scope, rates: Mapping[str, Decimal] | None) -> Any:
    """(message id, rule id, variant, held out, revenue) of each measured
    message with an order (with a rate) inside its window, from the pairs."""
    amount, known = pair_amount(rates)
    return (select(WindowOrder.message_id, WindowOrder.rule_id, WindowOrder.variant, WindowOrder.held_out,
                   func.sum(amount).label("revenue"))
            .where(*scope.pairs, *known)
            .group_by(WindowOrder.message_id, WindowOrder.rule_id, WindowOrder.variant, WindowOrder.held_out)
            .subquery("spent"))


def variant_outcomes(session: Session, *, now: datetime, rule_ids: Sequence[int] | None = None,
                     rates: Mapping[str, Decimal] | None = None, since: datetime | None = None,
                     until: datetime | None = None, by: Sequence[ColumnElement[Any]] = (),
                     counts: Mapping[tuple[int, str | None, MessageStatus], StatusCount] | None = None,
                     ) -> list[VariantOutcome]:
    """Per rule × arm (each variant, the control group; a rule without
    variants has one treated arm, ``variant`` None): assigned, sent,
    measured, converted, revenue and its squares. ``rule_ids``: only those
    rules; ``rates``: sum amounts converted into the reporting currency
    (currency → value of one unit), leaving out orders in a currency without
    one (None: amounts as they are); ``since``/``until``: only messages
    planned in [since, until); ``by``: further grouping by columns of
    ``messages``, ``customers`` or ``customer_stats`` (outer-joined: a customer
    without stats groups as None) — every figure is a sum, so the groups add
    up to the arm. ``counts``: :func:`message_counts` of the same scope, when
    the caller has them already.

    Orders are read from the pairs the database keeps (``window_orders``):
    without ``by``, two grouped passes (the messages per rule × variant ×
    status, and the pairs per message); with it, one pass over the messages,
    each outer-joined to its revenue."""
    scope = Scope(rule_ids, since, until)
    if by:
        return _outcomes_by(session, scope, now=now, rates=rates, by=by)
    counts = message_counts(session, scope, now=now) if counts is None else counts
    spent = spent_per_message(scope, rates)
    sums = {(int(rule_id), variant, bool(held)): (int(n), _decimal(revenue), _decimal(squares))
            for rule_id, variant, held, n, revenue, squares in session.execute(
                select(spent.c.rule_id, spent.c.variant, spent.c.held_out, func.count(),
                       func.sum(spent.c.revenue, type_=MONEY),
                       func.sum(spent.c.revenue * spent.c.revenue, type_=SQUARES))
                .group_by(spent.c.rule_id, spent.c.variant, spent.c.held_out))}
    arms: dict[tuple[int, str | None, bool], list[int]] = {}
    for (rule_id, variant, status), count in counts.items():
        held = status is MessageStatus.HELD_OUT
        arm = arms.setdefault((rule_id, None if held else variant, held), [0, 0, 0, 0])
        arm[0] += count.messages
        arm[1] += count.messages if status is MessageStatus.SENT else 0
        if status in MEASURED:
            arm[2] += count.messages
            arm[3] += count.open_windows
    names = rule_names(session, (rule_id for rule_id, _, _ in arms))
    found = []
    for (rule_id, variant, held), (assigned, sent, measured, still_open) in arms.items():
        converted, revenue, squares = sums.get((rule_id, variant, held), (0, Decimal(0), Decimal(0)))
        found.append(VariantOutcome(rule_id=rule_id, rule=names[rule_id], variant=variant, held_out=held,
                                    assigned=assigned, sent=sent, measured=measured, converted=converted,
                                    revenue=revenue, revenue_squares=squares, open_windows=still_open))
    return sorted(found, key=_arm_order)


def _outcomes_by(session: Session, scope: Scope, *, now: datetime, rates: Mapping[str, Decimal] | None,
                 by: Sequence[ColumnElement[Any]]) -> list[VariantOutcome]:
    held = Message.status == MessageStatus.HELD_OUT
    measured = Message.status.in_(list(MEASURED))
    # Columns of messages are carried through the per-message step; those of
    # customers and customer_stats are joined after it, once per message.
    own = {n: column.label(f"by_{n}") for n, column in enumerate(by) if _of_messages(column)}
    spent = spent_per_message(scope, rates)
    per = (
        select(Message.rule_id, Message.variant, Message.customer_id, held.label("held_out"),
               (Message.status == MessageStatus.SENT).label("sent"), measured.label("measured"),
               case((spent.c.message_id.is_not(None), 1), else_=0).label("converted"),
               func.coalesce(spent.c.revenue, 0).label("revenue"),
               case((and_(measured, Message.attribute_until > now), 1), else_=0).label("open"), *own.values())
        .select_from(Message.__table__.outerjoin(spent, spent.c.message_id == Message.id))
        .where(*scope.messages)
        .subquery("per_message")
    )
    grouped = [per.c[own[n].name] if n in own else column for n, column in enumerate(by)]
    source: Any = per
    if len(own) < len(by):
        source = source.join(Customer, Customer.id == per.c.customer_id).outerjoin(
            CustomerStats, CustomerStats.customer_id == per.c.customer_id)
    # Grouped by ids (a hash of a few thousand groups); the rules' names are joined to the sums, and the
    # order made here (sorting 5M rows by name for the grouping spilled to disk: 6 of 16 s at 5M messages).
    rows = session.execute(
        select(per.c.rule_id, per.c.variant, per.c.held_out, func.count(),
               func.sum(case((per.c.sent, 1), else_=0)), func.sum(case((per.c.measured, 1), else_=0)),
               func.sum(per.c.converted), func.sum(per.c.revenue, type_=MONEY),
               func.sum(per.c.revenue * per.c.revenue, type_=SQUARES), func.sum(per.c.open), *grouped)
        .select_from(source)
        .group_by(per.c.rule_id, per.c.variant, per.c.held_out, *grouped)
    ).all()
    names = rule_names(session, (row[0] for row in rows))
    found = [VariantOutcome(rule_id=int(rule_id), rule=names[rule_id], variant=variant, held_out=bool(is_held),
                            assigned=int(count), sent=int(sent or 0), measured=int(counted or 0),
                            converted=int(conv or 0), revenue=_decimal(revenue), revenue_squares=_decimal(squares),
                            open_windows=int(still_open or 0), group=tuple(group))
             for rule_id, variant, is_held, count, sent, counted, conv, revenue, squares, still_open, *group in rows]
    return sorted(found, key=_arm_order)


def _arm_order(outcome: VariantOutcome) -> tuple[Any, ...]:
    """By rule name, treated arms before the control group, variants by name (None first)."""
    return (outcome.rule, outcome.held_out, outcome.variant is not None, outcome.variant or "",
            tuple(str(value) for value in outcome.group))


def _of_messages(column: ColumnElement[Any]) -> bool:
    return getattr(column, "table", None) is Message.__table__


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
        select(Message.id, Message.variant, Message.attribute_until,
               func.row_number().over(partition_by=Message.variant, order_by=Message.id).label("k"))
        .where(Message.rule_id == rule_id, Message.status == MessageStatus.SENT, Message.variant.in_(list(variants)))
        .subquery("ranked")
    )
    # What each ordered inside its window: the pairs the database keeps (amounts as they are, every currency).
    spent = spent_per_message(Scope([rule_id]), None)
    per = (select(ranked.c.variant, ranked.c.attribute_until,
                  case((spent.c.message_id.is_not(None), 1), else_=0).label("converted"),
                  func.coalesce(spent.c.revenue, 0).label("revenue"))
           .select_from(ranked.outerjoin(spent, spent.c.message_id == ranked.c.id))
           .where(ranked.c.k <= size).subquery("sample"))
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


__all__ = [
    "MEASURED",
    "Sample",
    "Scope",
    "StatusCount",
    "VariantOutcome",
    "decision_of",
    "first_sends",
    "message_counts",
    "pair_amount",
    "record_decision",
    "rule_names",
    "spent_per_message",
    "summaries",
    "variant_outcomes",
    "winner_in_force",
]

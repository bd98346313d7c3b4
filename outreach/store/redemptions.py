"""Redemptions: an order that carries a given code belongs to that code's message.

A personal code is exact attribution: it went to one message, so an order
carrying it — dated no earlier than the code was given — is that message's
conversion, whatever the attribution window says. The first such order (the
earliest; the lower order id on a tie) is the **redemption**; a later order
with the same code is recorded as a **duplicate** use (a shared or reused
code), never as a second conversion. Each row keeps the order's revenue and
the discount given: the order's own ``discount`` when the shop sent one,
otherwise the offer's terms (a percentage of the pre-discount total —
``amount × p / (100 − p)``, the order's amount being what was paid — or the
amount off, in its own currency).

Redemptions are made again from the data whenever it changes, so the
result does not depend on what arrived first: every write of an order
(webhook, its updates, CSV import) re-reads its code (:func:`record_for_orders`),
and giving a code looks for orders already in that carry it
(:func:`record_for_coupons`). A code no message was given — unknown,
another shop's, or still free in a pool — stays on the order and
attributes nothing.

:func:`offer_results` is what the report reads: per rule (and any other
grouping of messages, e.g. a variant) and currency, redemptions, their
revenue and discount, and the duplicate uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Numeric,
    Table,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from outreach.store import dialect
from outreach.store.models import Coupon, CouponRedemption, Message, Order, Rule
from outreach.store.variants import Scope, rule_names

REDEMPTIONS, COUPONS, ORDERS = (cast(Table, m.__table__) for m in (CouponRedemption, Coupon, Order))
R, C, ORD = REDEMPTIONS.c, COUPONS.c, ORDERS.c
#: Where the discount of a redemption came from.
FROM_ORDER, FROM_OFFER = "order", "offer"
_COLUMNS = ["coupon_id", "order_id", "message_id", "ordered_at", "amount", "currency", "discount",
            "discount_currency", "discount_source", "duplicate", "recorded_at"]


def _uses(where: ColumnElement[bool], now: datetime) -> Any:
    """The redemptions of the orders and coupons ``where`` selects (duplicates decided after)."""
    said = ORD.discount.is_not(None)
    computed = case(
        (C.percent_off.is_not(None), func.round(ORD.amount * C.percent_off / (100 - C.percent_off), 2)),
        else_=func.coalesce(C.amount_off, 0))
    return (select(C.id, ORD.id, C.message_id, ORD.ordered_at, ORD.amount, ORD.currency,
                   case((said, ORD.discount), else_=computed).cast(Numeric(14, 2)),
                   case((or_(said, C.percent_off.is_not(None)), ORD.currency),
                        else_=func.coalesce(C.currency, ORD.currency)),
                   case((said, literal(FROM_ORDER)), else_=literal(FROM_OFFER)), false(), literal(now))
            .select_from(ORDERS.join(COUPONS, C.code == ORD.coupon_code))
            .where(where, C.given_at.is_not(None), ORD.ordered_at >= C.given_at))


def record_for_orders(conn: Connection, order_ids: Sequence[int], *, now: datetime) -> None:
    """Make the redemptions of these orders again from what they carry now (a
    new order, an update, a code changed or gone), and decide duplicates anew
    for every code concerned. Leaves the transaction to the caller."""
    if not order_ids:
        return
    mine = dialect.among(conn, ORD.id, order_ids)
    codes = sorted(set(conn.execute(select(ORD.coupon_code).where(mine, ORD.coupon_code.is_not(None))).scalars()))
    before = sorted(set(conn.execute(select(R.coupon_id).where(dialect.among(conn, R.order_id, order_ids)))
                        .scalars()))
    if not codes and not before:
        return  # no code, now or before: most orders
    # Each look-up by its own index (an OR of two subqueries read every coupon).
    concerned = select(C.id).where(or_(C.code.in_(codes), C.id.in_(before))).order_by(C.id)
    if dialect.is_postgresql(conn):
        # Orders redeeming the same code one at a time: each sees the other's row
        # when it decides which came first. (Giving a code locks it as well.)
        concerned = concerned.with_for_update()
    coupon_ids = [int(i) for i in conn.execute(concerned).scalars()]
    if not coupon_ids:
        return
    conn.execute(REDEMPTIONS.delete().where(dialect.among(conn, R.order_id, order_ids)))
    conn.execute(dialect.insert(conn, REDEMPTIONS).from_select(_COLUMNS, _uses(mine, now)))
    _decide_duplicates(conn, coupon_ids)


def record_for_coupons(conn: Connection, coupon_ids: Sequence[int], *, now: datetime) -> None:
    """Codes just given: the orders already in that carry them (dated after
    the giving: an order the shop dates ahead of our clock, or a simulated run)."""
    if not coupon_ids:
        return
    uses = _uses(dialect.among(conn, C.id, coupon_ids), now)
    conn.execute(dialect.insert(conn, REDEMPTIONS).from_select(_COLUMNS, uses)
                 .on_conflict_do_nothing(index_elements=["order_id"]))
    _decide_duplicates(conn, coupon_ids)


def _decide_duplicates(conn: Connection, coupon_ids: Sequence[int]) -> None:
    """Of each code's orders, the earliest (then the lowest id) is the redemption; the rest are duplicates."""
    earlier = REDEMPTIONS.alias("earlier")
    first = ~exists().where(earlier.c.coupon_id == R.coupon_id, or_(
        earlier.c.ordered_at < R.ordered_at,
        and_(earlier.c.ordered_at == R.ordered_at, earlier.c.order_id < R.order_id)))
    conn.execute(update(REDEMPTIONS).where(dialect.among(conn, R.coupon_id, coupon_ids))
                 .values(duplicate=case((first, false()), else_=literal(True))))


# ------------------------------------------------------------------ what the report reads
@dataclass(frozen=True)
class OfferResult:
    """One rule's redeemed codes in one currency (a rule whose orders came in
    two currencies has two rows; amounts are never summed across currencies)."""

    rule: str
    #: The values of the extra grouping asked for (``by``), e.g. ``("B",)`` for a variant; ``()`` without.
    group: tuple[Any, ...]
    currency: str
    #: Messages whose code an order redeemed (at most one per message): conversions.
    redemptions: int
    #: Those orders' amounts, in ``currency``.
    revenue: Decimal
    #: The discount given on them, in ``currency`` (what the offer cost).
    discount: Decimal
    #: Later orders with a code already redeemed: not conversions, but discounts given all the same.
    duplicate_uses: int
    duplicate_revenue: Decimal
    duplicate_discount: Decimal


def offer_results(session: Session, *, by: Sequence[ColumnElement[Any]] = (), since: datetime | None = None,
                  until: datetime | None = None, messages: ColumnElement[bool] | None = None) -> list[OfferResult]:
    """Per rule (× ``by``, columns of ``messages``, e.g. ``Message.variant``)
    and currency: redemptions, redeemed revenue and discount cost, and
    duplicate uses — of orders placed in [``since``, ``until``) when given,
    of the messages ``messages`` selects when given (e.g. planned in a period).
    Revenue is grouped by the order's currency, the discount by its own
    (an amount off in another currency than the order's stays in it)."""
    window = [c for c in (R.ordered_at >= since if since else None, R.ordered_at < until if until else None,
                          messages) if c is not None]
    keys = [Rule.name, *by]
    base = (REDEMPTIONS.join(Message, Message.id == R.message_id).join(Rule, Rule.id == Message.rule_id))
    money: dict[tuple[Any, ...], list[Any]] = {}

    def entry(key: tuple[Any, ...]) -> list[Any]:
        return money.setdefault(key, [0, Decimal("0"), Decimal("0"), 0, Decimal("0"), Decimal("0")])

    for *key, currency, duplicate, count, revenue in session.execute(
            select(*keys, R.currency, R.duplicate, func.count(), func.sum(R.amount)).select_from(base)
            .where(*window).group_by(*keys, R.currency, R.duplicate)):
        row = entry((*key, currency))
        row[3 if duplicate else 0] += int(count)
        row[4 if duplicate else 1] += Decimal(str(revenue or 0))
    for *key, currency, duplicate, discount in session.execute(
            select(*keys, R.discount_currency, R.duplicate, func.sum(R.discount)).select_from(base)
            .where(*window).group_by(*keys, R.discount_currency, R.duplicate)):
        entry((*key, currency))[5 if duplicate else 2] += Decimal(str(discount or 0))
    return [OfferResult(rule=key[0], group=tuple(key[1:-1]), currency=key[-1], redemptions=v[0], revenue=v[1],
                        discount=v[2], duplicate_uses=v[3], duplicate_revenue=v[4], duplicate_discount=v[5])
            for key, v in sorted(money.items(), key=lambda kv: tuple(str(k) for k in kv[0]))]


def codes_given(session: Session, *, by_variant: bool = False,
                scope: Scope | None = None) -> dict[tuple[Any, ...], int]:
    """(rule name[, variant]) → messages given a code (the denominator of a
    redemption rate), of the messages in ``scope`` (None: all). One grouped pass over the
    codes: each carries its message's rule, variant and plan time (copied by
    triggers, migration 0021)."""
    keys = [C.rule_id, *([C.variant] if by_variant else [])]
    counts = session.execute(select(*keys, func.count()).where(C.message_id.is_not(None),
                                                                *(scope or Scope()).of(C.rule_id, C.planned_at))
                             .group_by(*keys)).all()
    names = rule_names(session, (row[0] for row in counts))
    return {(names[rule_id], *rest): int(count) for rule_id, *rest, count in counts}

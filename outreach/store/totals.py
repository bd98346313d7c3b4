"""Order totals "as of" a moment, read from the maintained ``order_totals``.

``order_totals`` holds every customer's all-time count, revenue, first and
last order (kept by database triggers). As of ``now`` those figures are exact
for every customer whose last order is not after ``now`` — the whole base,
when ``now`` is the present. The few customers with orders after ``now``
(evaluating an earlier moment with ``--now``, or orders stamped in the future)
are recomputed from ``orders``, so the answer is the same as aggregating every
order up to ``now``, at the cost of one indexed look-up per such customer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select, union_all

from outreach.store.models import Order, OrderTotals

T = OrderTotals


def as_of(now: datetime) -> Select[*tuple[Any, ...]]:
    """(customer_id, order_count, revenue, first_order_at, last_order_at) of
    every customer with an order up to ``now``."""
    exact = select(T.customer_id, T.order_count, T.revenue, T.first_order_at, T.last_order_at).where(
        T.last_order_at <= now
    )
    later = (
        select(
            Order.customer_id,
            func.count().label("order_count"),
            func.sum(Order.amount).label("revenue"),
            func.min(Order.ordered_at).label("first_order_at"),
            func.max(Order.ordered_at).label("last_order_at"),
        )
        .join(T, T.customer_id == Order.customer_id)
        .where(T.last_order_at > now, Order.ordered_at <= now)
        .group_by(Order.customer_id)
    )
    return select(union_all(exact, later).subquery("order_totals_as_of"))


def first_orders(now: datetime) -> Select[*tuple[Any, ...]]:
    """(customer_id, first_order_at) as of ``now``: the all-time first order
    is the first as of any moment after it, so no recomputation is needed."""
    return select(T.customer_id, T.first_order_at).where(T.first_order_at <= now)


def metric(name: str, now: datetime, customer_id: Any) -> ColumnElement[Any]:
    """One customer's all-time ``count``, ``total``, ``average``,
    ``last`` or ``first`` order as of ``now`` (a correlated scalar; NULL
    without orders — count and total then read 0)."""
    mine = [Order.customer_id == T.customer_id, Order.ordered_at <= now]
    stored: dict[str, tuple[Any, Any]] = {
        "count": (T.order_count, func.count()),
        "total": (T.revenue, func.sum(Order.amount)),
        "average": (T.revenue / T.order_count, func.avg(Order.amount)),
        "last": (T.last_order_at, func.max(Order.ordered_at)),
    }
    if name == "first":
        value = select(T.first_order_at).where(T.customer_id == customer_id, T.first_order_at <= now)
        return value.scalar_subquery()
    exact, live = stored[name]
    recomputed = select(live).select_from(Order).where(*mine).scalar_subquery()
    value = select(case((T.last_order_at <= now, exact), else_=recomputed)).where(T.customer_id == customer_id)
    result = value.scalar_subquery()
    return func.coalesce(result, 0) if name in ("count", "total") else result

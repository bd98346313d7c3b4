"""A plain-Python statement of the segment language, the oracle the SQL
compiler is checked against (tests/test_segments_property.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from outreach.rules.conditions import (
    AllCondition,
    AnyCondition,
    BoughtCondition,
    FieldCondition,
    NotCondition,
    OrdersAggregate,
    OrdersCondition,
    TagCondition,
    WindowedProducts,
)
from outreach.store.dialect import numeric_or_none


@dataclass
class PyOrder:
    at: datetime
    amount: Decimal
    items: list[tuple[str, str]]  # (sku, category)


@dataclass
class PyCustomer:
    external_id: str
    customer_type: str
    locale: str
    email: str | None
    attributes: dict[str, str]
    tags: set[str]
    orders: list[PyOrder] = field(default_factory=list)


def _compare(value: Any, ops: dict[str, Any]) -> bool:
    if value is None:
        return False
    checks = {
        "eq": lambda v, x: v == x, "ne": lambda v, x: v != x,
        "in": lambda v, x: v in x, "not_in": lambda v, x: v not in x,
        "gt": lambda v, x: v > x, "gte": lambda v, x: v >= x,
        "lt": lambda v, x: v < x, "lte": lambda v, x: v <= x,
    }
    return all(checks[name](value, target) for name, target in ops.items())


def _field(c: PyCustomer, cond: FieldCondition) -> bool:
    ops = cond.operators()
    if cond.field.startswith("attributes."):
        raw = c.attributes.get(cond.field.split(".", 1)[1])
        sample = next((v[0] if isinstance(v, list) and v else v for v in ops.values()), "")
        value: Any = numeric_or_none(raw) if isinstance(sample, (int, float)) and not isinstance(sample, bool) else raw
    else:
        value = getattr(c, cond.field)
    result = True
    if cond.exists is not None:
        present = value is not None and value != ""
        result = present if cond.exists else not present
    return result and (_compare(value, ops) if ops else True)


def _orders_in(c: PyCustomer, now: datetime, within: int | None) -> list[PyOrder]:
    return [o for o in c.orders if o.at <= now and (within is None or o.at > now - timedelta(days=within))]


def _orders(c: PyCustomer, agg: OrdersAggregate, now: datetime) -> bool:
    orders = _orders_in(c, now, agg.within_days)
    ops = agg.operators()
    if agg.metric == "count":
        return _compare(len(orders), ops)
    if agg.metric == "total":
        return _compare(sum((o.amount for o in orders), Decimal(0)), {k: _dec(v) for k, v in ops.items()})
    if agg.metric == "average":
        if not orders:
            return False
        avg = sum((o.amount for o in orders), Decimal(0)) / len(orders)
        return _compare(avg, {k: _dec(v) for k, v in ops.items()})
    if not orders:
        return False
    moment = max(o.at for o in orders) if agg.metric == "days_since_last" else min(o.at for o in orders)
    days = (now - moment) / timedelta(days=1)
    results = []
    for name, n in ops.items():
        values = n if isinstance(n, list) else [n]
        if name == "gte":
            results.append(days >= n)
        elif name == "gt":
            results.append(days > n)
        elif name == "lte":
            results.append(days <= n)
        elif name == "lt":
            results.append(days < n)
        else:
            same = any(v <= days < v + 1 for v in values)
            results.append(same if name in ("eq", "in") else not same)
    return all(results)


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return Decimal(str(v))


def _bought(c: PyCustomer, match: WindowedProducts, now: datetime) -> bool:
    return any(
        sku in match.sku or cat in match.category
        for o in _orders_in(c, now, match.within_days)
        for sku, cat in o.items
    )


def evaluate(c: PyCustomer, cond: Any, now: datetime) -> bool:
    if cond is None:
        return True
    if isinstance(cond, AllCondition):
        return all(evaluate(c, x, now) for x in cond.all)
    if isinstance(cond, AnyCondition):
        return any(evaluate(c, x, now) for x in cond.any)
    if isinstance(cond, NotCondition):
        return not evaluate(c, cond.not_, now)
    if isinstance(cond, FieldCondition):
        return _field(c, cond)
    if isinstance(cond, TagCondition):
        wanted = {cond.tag} if isinstance(cond.tag, str) else set(cond.tag)
        return bool(c.tags & wanted)
    if isinstance(cond, OrdersCondition):
        return _orders(c, cond.orders, now)
    if isinstance(cond, BoughtCondition):
        return _bought(c, cond.bought, now)
    raise TypeError(cond)

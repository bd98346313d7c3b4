"""Compile segment conditions to one SQL boolean expression over ``customers``.

Every condition becomes a column expression or a correlated ``EXISTS`` /
scalar subquery, so a segment is evaluated by the database over the whole
customer base in one statement. ``now`` bounds every order window, so
evaluating "as of" another moment ignores orders after it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    exists,
    false,
    func,
    not_,
    null,
    or_,
    select,
    true,
)

from outreach.clock import parse_instant
from outreach.domain import CustomerType
from outreach.errors import RuleError
from outreach.rules.conditions import (
    AllCondition,
    AnyCondition,
    BoughtCondition,
    FieldCondition,
    NotCondition,
    OrdersCondition,
    ProductMatch,
    SegmentRef,
    StatsCondition,
    TagCondition,
)
from outreach.store import totals
from outreach.store.dialect import json_number, numeric_or_none
from outreach.store.models import Customer, CustomerProduct, CustomerStats, CustomerTag, Order, OrderItem

_OPS = {
    "eq": lambda col, v: col == v,
    "ne": lambda col, v: col != v,
    "in": lambda col, v: col.in_(v),
    "not_in": lambda col, v: col.not_in(v),
    "gt": lambda col, v: col > v,
    "gte": lambda col, v: col >= v,
    "lt": lambda col, v: col < v,
    "lte": lambda col, v: col <= v,
}


#: How a JSON true/false reads as text: PostgreSQL's ``->>`` gives
#: 'true'/'false', SQLite's JSON_EXTRACT gives 1/0 (cast to '1'/'0').
JSON_TRUE = ("true", "1")
JSON_FALSE = ("false", "0")
#: Customer columns that are never NULL and hold no free text.
_NOT_TEXT = ("birthday", "created_at", "customer_type")
#: Customer columns holding text: a number written unquoted in a rule
#: (``phone: {eq: 13800000000}``) is compared as text, on every database.
_TEXT_COLUMNS = ("external_id", "name", "email", "phone", "timezone", "locale")


def _bad_value(where: str, value: Any, hint: str) -> RuleError:
    return RuleError.single(f"{where}: cannot compare with {value!r}", field="segment", hint=hint)


def _coerce(field: str, value: Any) -> Any:
    """A rule's value as the column's type (YAML reads ``1001`` as a number,
    ``yes`` as true); a value that cannot be meant for the column is a rule error."""
    if isinstance(value, list):
        return [_coerce(field, v) for v in value]
    if field == "customer_type":
        try:
            return CustomerType(value)
        except ValueError:
            raise RuleError.single(
                f"unknown customer type '{value}'",
                field="segment.field",
                hint="customer_type is one of: " + ", ".join(t.value for t in CustomerType),
            ) from None
    if field in _TEXT_COLUMNS:
        if isinstance(value, bool):
            raise _bad_value(field, value, f"{field} is text: quote the value, e.g. 'yes'")
        return str(value)
    if field == "birthday":
        day = _iso_date(value)
        if day is None:
            raise _bad_value(field, value, "write a date like '1990-06-01' (quoted)")
        return day
    if field == "created_at":
        if not isinstance(value, str):
            raise _bad_value(field, value, "write a time like '2025-01-01T00:00:00+08:00' (quoted)")
        return parse_instant(value, field="segment.created_at")
    return value


def _iso_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _number(where: str, value: Any) -> Any:
    """An aggregate compares with a number (``gte: '2'`` is read as 2)."""
    if isinstance(value, list):
        return [_number(where, v) for v in value]
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        return value
    number = numeric_or_none(value)
    if number is None:
        raise _bad_value(where, value, "compare with a number, e.g. gte: 2")
    return number


def _attribute_sample(ops: dict[str, Any]) -> Any:
    """How to read a JSON attribute: as a boolean when the rule compares only
    with true/false, as a number when only with numbers, else as text."""
    values = [x for v in ops.values() for x in (v if isinstance(v, list) else [v])]
    if values and all(isinstance(x, bool) for x in values):
        return True
    if values and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        return 0
    return ""


def _as_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_value(element: Any, sample: Any) -> ColumnElement[Any]:
    """A JSON member read as true/false when ``sample`` is a boolean, as a
    number when it is a number (text that is neither never matches), else as text."""
    if isinstance(sample, bool):
        # Not CAST(… AS BOOLEAN): PostgreSQL fails the whole query on a value
        # like "maybe", and reads "yes" as true where SQLite reads it as false.
        text = element.as_string()
        return case((text.in_(JSON_TRUE), true()), (text.in_(JSON_FALSE), false()), else_=null())
    if isinstance(sample, (int, float)):
        return json_number(element)
    text_value: ColumnElement[Any] = element.as_string()
    return text_value


def json_operand(element: Any, ops: dict[str, Any]) -> tuple[ColumnElement[Any], dict[str, Any]]:
    """A JSON member (customer attribute, event property) read the way the
    rule's values ask for, and those values ready to compare with it."""
    sample = _attribute_sample(ops)
    if isinstance(sample, str):
        ops = {k: _as_text(v) for k, v in ops.items()}
    return json_value(element, sample), ops


def compare(column: ColumnElement[Any], ops: dict[str, Any]) -> ColumnElement[bool]:
    """AND of every operator; NULL compares false (not unknown), as a marketer
    expects — also under ``not:``. COALESCE keeps a correlated subquery to one
    evaluation (an ``IS NOT NULL`` guard would run it twice)."""
    parts = [_OPS[name](column, value) for name, value in ops.items()]
    return func.coalesce(and_(*parts), false())


def _field(cond: FieldCondition) -> ColumnElement[bool]:
    if cond.field.startswith("attributes."):
        key = cond.field.split(".", 1)[1]
        column, ops = json_operand(Customer.attributes[key], cond.operators())
    else:
        ops = {k: _coerce(cond.field, v) for k, v in cond.operators().items()}
        column = getattr(Customer, cond.field)
    parts: list[ColumnElement[bool]] = []
    if cond.exists is not None:
        textual = cond.field not in _NOT_TEXT
        present = and_(column.is_not(None), column != "") if textual else column.is_not(None)
        parts.append(present if cond.exists else not_(present))
    if ops:
        parts.append(compare(column, ops))
    return and_(*parts)


def _tag(cond: TagCondition) -> ColumnElement[bool]:
    tags = [cond.tag] if isinstance(cond.tag, str) else cond.tag
    return exists().where(CustomerTag.customer_id == Customer.id, CustomerTag.tag.in_(tags))


def _window(now: datetime, within_days: int | None) -> list[ColumnElement[bool]]:
    bounds: list[ColumnElement[bool]] = [Order.ordered_at <= now]
    if within_days is not None:
        bounds.append(Order.ordered_at > now - timedelta(days=within_days))
    return bounds


def _days_since(
    moment: ColumnElement[Any], ops: dict[str, Any], now: datetime
) -> ColumnElement[bool]:
    """``days since X <op> N`` rewritten as a comparison of X with a cut-off,
    which needs no dialect-specific date arithmetic. Days are whole 24 h."""

    def cutoff(n: float) -> datetime:
        return now - timedelta(days=float(n))

    parts: list[ColumnElement[bool]] = []
    for name, n in ops.items():
        if name == "gte":
            parts.append(moment <= cutoff(n))
        elif name == "gt":
            parts.append(moment < cutoff(n))
        elif name == "lte":
            parts.append(moment >= cutoff(n))
        elif name == "lt":
            parts.append(moment > cutoff(n))
        elif name in ("eq", "in", "ne", "not_in"):
            values = n if isinstance(n, list) else [n]
            same = or_(*[and_(moment <= cutoff(v), moment > cutoff(v + 1)) for v in values])
            parts.append(same if name in ("eq", "in") else not_(same))
    return and_(moment.is_not(None), *parts)


def _orders(cond: OrdersCondition, now: datetime) -> ColumnElement[bool]:
    agg = cond.orders
    where = [Order.customer_id == Customer.id, *_window(now, agg.within_days)]
    ops = {k: _number(f"orders.{agg.metric}", v) for k, v in agg.operators().items()}
    if agg.within_days is None:
        # All-time figures: one row of the maintained order totals.
        name = {"days_since_last": "last", "days_since_first": "first"}.get(agg.metric, agg.metric)
        value = totals.metric(name, now, Customer.id)
        if agg.metric.startswith("days_since"):
            return _days_since(value, ops, now)
        return compare(value, ops)
    if agg.metric == "count":
        # count(*) lets the database answer from the (customer, time) index alone.
        value = select(func.count()).select_from(Order).where(*where).scalar_subquery()
        return compare(value, ops)
    if agg.metric == "total":
        value = select(func.coalesce(func.sum(Order.amount), 0)).where(*where).scalar_subquery()
        return compare(value, ops)
    if agg.metric == "average":
        value = select(func.avg(Order.amount)).where(*where).scalar_subquery()
        return compare(value, ops)
    moment = select(
        func.max(Order.ordered_at) if agg.metric == "days_since_last" else func.min(Order.ordered_at)
    ).where(*where).scalar_subquery()
    return _days_since(moment, ops, now)


def product_match(match: ProductMatch, item: Any = OrderItem) -> ColumnElement[bool]:
    """An order line matches any listed SKU or category."""
    parts: list[ColumnElement[bool]] = []
    if match.sku:
        parts.append(item.sku.in_(match.sku))
    if match.category:
        parts.append(item.category.in_(match.category))
    return or_(*parts) if parts else false()


def ever_bought(match: ProductMatch, now: datetime, customer_id: Any) -> ColumnElement[bool]:
    """The customer bought a matching product at or before ``now`` — from the
    maintained ``customer_products`` (its first purchase is exact as of any
    moment after it)."""
    return exists().where(
        CustomerProduct.customer_id == customer_id,
        product_match(match, CustomerProduct),
        CustomerProduct.first_bought_at <= now,
    )


def bought_exists(
    match: ProductMatch, now: datetime, within_days: int | None
) -> ColumnElement[bool]:
    """EXISTS an order of this customer, up to ``now``, with a matching item."""
    if within_days is None:
        return ever_bought(match, now, Customer.id)
    return exists().where(
        Order.customer_id == Customer.id,
        OrderItem.order_id == Order.id,
        product_match(match),
        *_window(now, within_days),
    )


def _stats(cond: StatsCondition) -> ColumnElement[bool]:
    """Conditions on maintained aggregates (``outreach.store.stats``)."""
    f = cond.stats
    parts: list[ColumnElement[bool]] = [CustomerStats.customer_id == Customer.id]
    for name in ("r_score", "f_score", "m_score", "clv", "order_count", "revenue"):
        comparison = getattr(f, name)
        if comparison is not None:
            ops = {k: _number(f"stats.{name}", v) for k, v in comparison.operators().items()}
            parts.append(compare(getattr(CustomerStats, name), ops))
    if f.rfm_segment:
        parts.append(CustomerStats.rfm_segment.in_(f.rfm_segment))
    if f.lifecycle_stage:
        parts.append(CustomerStats.lifecycle_stage.in_(f.lifecycle_stage))
    if f.value_tier:
        parts.append(CustomerStats.value_tier == f.value_tier)
    return exists().where(*parts)


def uses_stats(cond: Any, segments: dict[str, Any] | None = None, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether evaluating ``cond`` needs fresh ``customer_stats``."""
    if cond is None:
        return False
    if isinstance(cond, StatsCondition):
        return True
    if isinstance(cond, (AllCondition, AnyCondition)):
        children = cond.all if isinstance(cond, AllCondition) else cond.any
        return any(uses_stats(c, segments, _seen) for c in children)
    if isinstance(cond, NotCondition):
        return uses_stats(cond.not_, segments, _seen)
    if isinstance(cond, SegmentRef) and segments and cond.segment in segments and cond.segment not in _seen:
        return uses_stats(segments[cond.segment], segments, _seen | {cond.segment})
    return False


def compile_condition(
    cond: Any, now: datetime, *, segments: dict[str, Any] | None = None, _seen: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    """One condition (any kind) → SQL boolean over ``customers``.

    ``segments`` are the named segments of rules/segments.yaml."""
    if cond is None:
        return true()
    if isinstance(cond, AllCondition):
        return and_(*[compile_condition(c, now, segments=segments, _seen=_seen) for c in cond.all])
    if isinstance(cond, AnyCondition):
        return or_(*[compile_condition(c, now, segments=segments, _seen=_seen) for c in cond.any])
    if isinstance(cond, NotCondition):
        return not_(compile_condition(cond.not_, now, segments=segments, _seen=_seen))
    if isinstance(cond, SegmentRef):
        if not segments or cond.segment not in segments:
            known = ", ".join(sorted(segments or {})) or "none defined"
            raise RuleError.single(
                f"unknown segment '{cond.segment}'", field="segment",
                hint=f"define it in rules/segments.yaml (known: {known})",
            )
        if cond.segment in _seen:
            raise RuleError.single(
                f"segment '{cond.segment}' refers to itself via {' → '.join(_seen)}",
                field="segment", hint="remove the loop from rules/segments.yaml",
            )
        return compile_condition(
            segments[cond.segment], now, segments=segments, _seen=(*_seen, cond.segment)
        )
    compiler = LEAVES.get(type(cond))
    if compiler is None:
        raise TypeError(f"no SQL for condition {type(cond).__name__}: add it to LEAVES in {__name__}")
    return compiler(cond, now)


LeafCompiler = Callable[[Any, datetime], ColumnElement[bool]]
#: Each leaf condition of ``outreach.rules.conditions`` → its SQL as of ``now``
#: (``all``, ``any``, ``not`` and named segments combine them, above).
LEAVES: dict[type[BaseModel], LeafCompiler] = {
    FieldCondition: lambda cond, now: _field(cond),
    TagCondition: lambda cond, now: _tag(cond),
    OrdersCondition: _orders,
    BoughtCondition: lambda cond, now: bought_exists(cond.bought, now, cond.bought.within_days),
    StatsCondition: lambda cond, now: _stats(cond),
}


__all__ = [
    "bought_exists",
    "compare",
    "compile_condition",
    "json_operand",
    "json_value",
    "product_match",
    "uses_stats",
]

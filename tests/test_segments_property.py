"""Property: the SQL a segment compiles to selects exactly the customers a
plain-Python reading of the same condition selects — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from oracle import PyCustomer, PyOrder, evaluate
from outreach.rules.spec import RuleSpec
from outreach.store.models import Customer, CustomerTag, Order, OrderItem
from outreach.store.segments import compile_condition

NOW = datetime(2026, 5, 20, 12, 0)
TYPES = ["retail", "business", "distributor"]
LOCALES = ["en", "zh_CN"]
TAGS = ["vip", "newsletter", "trade"]
CITIES = ["Shanghai", "London", "", "12", "7.5", "-3", "x1"]
PRODUCTS = [("LJ-100", "tea"), ("YX-POT", "teaware"), ("MOON-CK", "snacks")]

orders_st = st.lists(
    st.builds(
        PyOrder,
        # Whole days often, so days_since lands exactly on thresholds.
        at=st.one_of(st.integers(min_value=-10, max_value=1).map(lambda d: NOW + timedelta(days=d)),
                     st.integers(min_value=-400 * 24, max_value=24).map(lambda h: NOW + timedelta(hours=h))),
        # Whole amounts often, so totals land exactly on thresholds (boundaries).
        amount=st.one_of(st.integers(min_value=0, max_value=6).map(Decimal),
                         st.integers(min_value=0, max_value=50000).map(lambda c: Decimal(c) / 100)),
        items=st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=2),
    ),
    max_size=4,
)
customer_st = st.builds(
    PyCustomer,
    external_id=st.just(""),
    customer_type=st.sampled_from(TYPES),
    locale=st.sampled_from(LOCALES),
    email=st.one_of(st.none(), st.just(""), st.sampled_from(["a@x.test", "b@y.test"])),
    attributes=st.dictionaries(st.sampled_from(["city", "size"]), st.sampled_from(CITIES), max_size=2),
    tags=st.sets(st.sampled_from(TAGS), max_size=2),
    orders=orders_st,
)

small_int = st.integers(min_value=0, max_value=6)
field_cond = st.one_of(
    st.builds(lambda v: {"field": "customer_type", "eq": v}, st.sampled_from(TYPES)),
    st.builds(lambda v: {"field": "customer_type", "in": v}, st.lists(st.sampled_from(TYPES), min_size=1, max_size=2)),
    st.builds(lambda v: {"field": "locale", "ne": v}, st.sampled_from(LOCALES)),
    st.builds(lambda v: {"field": "email", "exists": v}, st.booleans()),
    st.builds(lambda v: {"field": "attributes.city", "eq": v}, st.sampled_from(CITIES)),
    st.builds(lambda op, v: {"field": "attributes.city", op: v},
              st.sampled_from(["gt", "gte", "lt", "lte"]), st.integers(min_value=-5, max_value=15)),
)
tag_cond = st.builds(
    lambda v: {"tag": v},
    st.one_of(st.sampled_from(TAGS), st.lists(st.sampled_from(TAGS), min_size=1, max_size=2)),
)
orders_cond = st.builds(
    lambda metric, op, n, within: {"orders": {"metric": metric, op: n, **({"within_days": within} if within else {})}},
    st.sampled_from(["count", "total", "average", "days_since_last", "days_since_first"]),
    st.sampled_from(["gt", "gte", "lt", "lte", "eq"]),
    st.one_of(small_int, st.integers(min_value=0, max_value=400)),
    st.one_of(st.none(), st.integers(min_value=1, max_value=400)),
)
bought_cond = st.builds(
    lambda key, v, within: {"bought": {key: v, **({"within_days": within} if within else {})}},
    st.sampled_from(["sku", "category"]),
    st.sampled_from(["LJ-100", "YX-POT", "tea", "teaware", "snacks"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=400)),
)
leaf = st.one_of(field_cond, tag_cond, orders_cond, bought_cond)
condition_st = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)


def _load(session: Session, people: list[PyCustomer]) -> dict[int, PyCustomer]:
    by_id: dict[int, PyCustomer] = {}
    for n, person in enumerate(people, start=1):
        person.external_id = f"P{n}"
        c = Customer(external_id=person.external_id, name=f"P {n}", email=person.email,
                     locale=person.locale, customer_type=person.customer_type, attributes=person.attributes,
                     timezone="UTC", created_at=NOW, updated_at=NOW)
        c.tags = [CustomerTag(tag=t) for t in sorted(person.tags)]
        session.add(c)
        session.flush()
        for k, o in enumerate(person.orders):
            order = Order(external_id=f"P{n}-{k}", customer_id=c.id, ordered_at=o.at, amount=o.amount,
                          currency="CNY")
            order.items = [OrderItem(sku=sku, category=cat) for sku, cat in o.items]
            session.add(order)
        session.flush()
        by_id[c.id] = person
    return by_id


BOUNDARY_PERSON = PyCustomer(
    external_id="", customer_type="retail", locale="en", email="a@x.test", attributes={"city": "12"},
    tags={"vip"}, orders=[PyOrder(at=NOW - timedelta(days=3), amount=Decimal(5), items=[("LJ-100", "tea")])],
)
BOUNDARY_CONDITIONS = [
    {"orders": {"metric": "count", "gte": 1}},
    {"orders": {"metric": "total", "gte": 5}},
    {"orders": {"metric": "average", "lte": 5}},
    {"orders": {"metric": "days_since_last", "gte": 3}},
    {"orders": {"metric": "days_since_last", "eq": 3}},
    {"orders": {"metric": "count", "within_days": 3, "lt": 1}},
    {"field": "attributes.city", "gte": 12},
    {"bought": {"category": "tea", "within_days": 3}},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(people=[BOUNDARY_PERSON], conditions=BOUNDARY_CONDITIONS)
@given(people=st.lists(customer_st, min_size=1, max_size=12), conditions=st.lists(condition_st, min_size=1, max_size=5))
def test_sql_agrees_with_python(engine: Engine, people: list[PyCustomer], conditions: list[dict[str, Any]]) -> None:
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            by_id = _load(session, people)
            for raw in conditions:
                cond = RuleSpec.model_validate(
                    {"name": "p", "trigger": {"type": "birthday"}, "template": "t",
                     "channels": ["email"], "segment": raw}).segment
                sql = set(session.scalars(select(Customer.id).where(compile_condition(cond, NOW))))
                python = {cid for cid, person in by_id.items() if evaluate(person, cond, NOW)}
                assert sql == python, raw
        finally:
            session.close()
            outer.rollback()

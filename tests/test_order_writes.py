"""Orders written a batch at a time (the webhook's group commit): each
delivery gets the answer it would have got alone, the newest version of an
order wins, and the tables the database keeps from orders stay right."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from outreach.domain import EventType
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerProduct, Order, OrderItem, OrderTotals, TrackingEvent
from outreach.store.order_writes import IncomingOrder, OrderDelivery, OrderLine, record_orders
from test_order_totals import PRODUCTS, assert_consistent
from test_sending import shop

T0 = datetime(2026, 5, 1, 10, 0)


def delivery(external_id: str, customer: str, *, signed: int, amount: str = "10.00",
             skus: tuple[str, ...] = ("A",)) -> OrderDelivery:
    order = IncomingOrder(external_id=external_id, customer_external_id=customer, ordered_at=T0,
                          amount=Decimal(amount), currency="cny",
                          items=tuple(OrderLine(sku=sku, category="tea", amount=Decimal("1.00")) for sku in skus))
    return OrderDelivery(order=order, payload={"external_id": external_id, "signed": signed},
                         reported_at=T0 + timedelta(minutes=signed))


def test_a_batch_answers_each_delivery_as_alone_and_keeps_the_newest_version(engine: Engine) -> None:
    ids = shop(engine, customers=[{"ext": "c1", "email": "c1@example.com"}, {"ext": "c2", "email": "c2@example.com"}])
    with transaction(engine) as session:
        [first] = record_orders(session, [delivery("O1", "c1", signed=5, skus=("A",))], source="webhook")
    assert first.stored and first.order_id is not None
    # Given one batch: an older replay of O1, O2 twice (the later version with other items), an order
    # of a customer nobody knows, and O4 delivered twice with the same signature time
    batch = [delivery("O1", "c1", signed=1, amount="99.00", skus=("Z",)),
             delivery("O2", "c1", signed=1, amount="20.00", skus=("A",)),
             delivery("O2", "c1", signed=2, amount="25.00", skus=("B", "C")),
             delivery("O3", "nobody", signed=1),
             delivery("O4", "c2", signed=3, amount="40.00"),
             delivery("O4", "c2", signed=3, amount="40.00")]
    with transaction(engine) as session:
        written = record_orders(session, batch, source="webhook")
    # Then each delivery is answered as it would have been on its own
    assert [(w.stored, w.refused is not None) for w in written] == [
        (False, False), (False, False), (True, False), (False, True), (True, False), (False, False)]
    assert written[0].order_id == first.order_id
    assert written[1].order_id == written[2].order_id and written[4].order_id == written[5].order_id
    assert written[3].refused is not None and "nobody" in str(written[3].refused)
    with Session(engine) as s:
        # (the shop's customers each have an order already, o-c1 and o-c2: left out here)
        orders = {o.external_id: (o.amount, o.currency) for o in s.scalars(select(Order))
                  if not o.external_id.startswith("o-")}
        items = {(o, sku) for o, sku in s.execute(select(Order.external_id, OrderItem.sku).join(OrderItem))
                 if not o.startswith("o-")}
        events = s.scalars(select(TrackingEvent.order_id).where(TrackingEvent.type == EventType.ORDER)).all()
        totals = {cid: (n, amount) for cid, n, amount in s.execute(
            select(OrderTotals.customer_id, OrderTotals.order_count, OrderTotals.revenue))}
        products = {(cid, sku) for cid, sku in s.execute(select(CustomerProduct.customer_id, CustomerProduct.sku))}
    # And the stored versions are O1's first, O2's latest, O4 once — nothing of the unknown customer's
    assert orders == {"O1": (Decimal("10.00"), "CNY"), "O2": (Decimal("25.00"), "CNY"),
                      "O4": (Decimal("40.00"), "CNY")}
    assert items == {("O1", "A"), ("O2", "B"), ("O2", "C"), ("O4", "A")}
    assert sorted(events) == sorted({w.order_id for w in written if w.order_id is not None})  # one event an order
    # And the per-customer tables the database keeps agree with the orders (the shop's 50.00 each included)
    assert totals == {ids["c1"]: (3, Decimal("85.00")), ids["c2"]: (2, Decimal("90.00"))}
    assert products == {(ids["c1"], "A"), (ids["c1"], "B"), (ids["c1"], "C"), (ids["c1"], "LJ-100"),
                        (ids["c2"], "A"), (ids["c2"], "LJ-100")}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 5


# A random delivery: (order, customer, signed minute, day ordered, amount, its items as indexes into PRODUCTS)
random_delivery = st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 4), st.integers(-30, 0),
                            st.decimals(min_value=0, max_value=999, places=2),
                            st.lists(st.integers(0, len(PRODUCTS) - 1), max_size=3))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(random_delivery, min_size=1, max_size=6), min_size=1, max_size=5))
def test_any_history_of_batches_stores_the_newest_version_of_each_order_and_keeps_the_tables_right(
    engine: Engine, batches: list[list[tuple[int, int, int, int, Decimal, list[int]]]]
) -> None:
    # (hypothesis runs every example on the same database: the customers stay, the orders go)
    if not _customers(engine):
        shop(engine, customers=[{"ext": f"c{n}", "email": f"c{n}@example.com"} for n in range(3)])
    with transaction(engine) as s:
        s.execute(delete(Order))
    expected: dict[str, OrderDelivery] = {}
    for batch in batches:
        # Given a batch of deliveries of a few orders, moved between customers, re-dated, re-itemed, replayed
        deliveries = [OrderDelivery(
            order=IncomingOrder(external_id=f"R{o}", customer_external_id=f"c{c}", ordered_at=T0 + timedelta(days=day),
                                amount=amount, currency="CNY",
                                items=tuple(OrderLine(sku=PRODUCTS[i][0], category=PRODUCTS[i][1]) for i in items)),
            payload={"o": o}, reported_at=T0 + timedelta(minutes=signed))
            for o, c, signed, day, amount, items in batch]
        with transaction(engine) as s:
            record_orders(s, deliveries, source="webhook")
        for d in deliveries:  # what delivering them one at a time keeps: the latest signed, the first on a tie
            stored = expected.get(d.order.external_id)
            if stored is None or (stored.reported_at or T0) < (d.reported_at or T0):
                expected[d.order.external_id] = d
        # Then each order is its newest version, with its items once, one ORDER event each
        with Session(engine) as s:
            orders = {o.external_id: (customer, o.ordered_at, o.amount,
                                      sorted((i.sku, i.category or "") for i in o.items))
                      for o, customer in s.execute(select(Order, Customer.external_id).join(Customer))}
            events = s.scalar(select(func.count()).select_from(TrackingEvent)
                              .where(TrackingEvent.type == EventType.ORDER))
        assert orders == {ext: (d.order.customer_external_id, d.order.ordered_at, d.order.amount,
                                sorted((i.sku, i.category or "") for i in d.order.items))
                          for ext, d in expected.items()}
        assert events == len(expected)
        # And the totals and products the database keeps agree with the orders
        assert_consistent(engine)


def _customers(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Customer)) or 0

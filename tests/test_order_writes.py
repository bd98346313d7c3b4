"""Orders written a batch at a time (the webhook's group commit): each
delivery gets the answer it would have got alone, the newest version of an
order wins, and the tables the database keeps from orders stay right."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach.domain import EventType
from outreach.store.engine import transaction
from outreach.store.models import CustomerProduct, Order, OrderItem, OrderTotals, TrackingEvent
from outreach.store.order_writes import IncomingOrder, OrderDelivery, OrderLine, record_orders
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

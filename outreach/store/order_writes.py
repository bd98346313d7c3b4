"""Orders written a batch at a time: the webhook's group commit hands over
every delivery waiting, and they are written in a handful of set-based
statements — not five per order.

On PostgreSQL every write to ``orders`` and ``order_items`` runs the
statement-level triggers that keep ``order_totals`` and
``customer_products`` (migrations 0002, 0003), once per *statement*: five
statements per order cost the database about 4 ms an order, most of it in
those triggers (measured under the webhook bench: the database, not the
server, was the limit). A batch costs one run of each.

Per batch, in one transaction (the caller's):

1. the customers, locked in id order (``FOR NO KEY UPDATE``: the orders'
   foreign-key checks go on; two batches never wait on each other in a
   circle), so one customer's orders are written one batch at a time — the
   per-customer tables the triggers keep would otherwise race; an unknown
   customer's delivery is refused before anything is written;
2. one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` for the orders — the
   newest delivery of each order in the batch, replacing the stored version
   only if it was signed later (``reported_at``): an old body replayed
   changes nothing;
3. one ``DELETE`` of the stored orders' items and one ``INSERT`` of their new ones;
4. one ``INSERT … ON CONFLICT DO NOTHING`` of their ORDER events (one per order);
5. the coupon codes they carry recorded as redemptions (``store.redemptions``;
   skipped when no order written carries a code and none had a redemption).

On PostgreSQL, 2–4 are one statement (``store.order_statement``: writable
CTEs), so a batch is BEGIN, the lock, that statement and COMMIT — four round
trips where there were ten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import String, Table, delete, insert, or_, select
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.domain import EventType
from outreach.errors import PayloadError
from outreach.store import coupons, dialect, order_statement, redemptions
from outreach.store.models import Customer, Order, OrderItem, TrackingEvent

CUSTOMERS, ORDERS = cast(Table, Customer.__table__), cast(Table, Order.__table__)
ITEMS, EVENTS = cast(Table, OrderItem.__table__), cast(Table, TrackingEvent.__table__)
#: Order lines written per statement at most (SQLite's bound parameters stay well under its limit).
ITEMS_PER_STATEMENT = 1000


@dataclass(frozen=True, kw_only=True)
class OrderLine:
    sku: str
    category: str | None = None
    quantity: int = 1
    amount: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class IncomingOrder:
    """An order as a source reported it (checked by that source's parser)."""

    external_id: str
    customer_external_id: str
    ordered_at: datetime  # naive UTC
    amount: Decimal
    currency: str
    coupon_code: str | None = None
    items: tuple[OrderLine, ...] = ()
    #: What the order says its coupon took off (in its currency), if it says.
    discount: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class OrderDelivery:
    """One delivery of an order: the order, what the source sent, and when it
    signed it (``reported_at``; None: always the newest)."""

    order: IncomingOrder
    payload: dict[str, Any]
    reported_at: datetime | None = None
    simulated: bool = False


@dataclass(frozen=True)
class Written:
    """What became of one delivery: its order's id and whether this version
    was stored — or why it was refused (nothing of it written)."""

    order_id: int | None
    stored: bool
    refused: PayloadError | None = None


def record_orders(session: Session, deliveries: Sequence[OrderDelivery], *, source: str) -> list[Written]:
    """Upsert a batch of order deliveries (items replaced, an ORDER event each
    once); one :class:`Written` per delivery, in order."""
    if not deliveries:
        return []
    customers = _locked_customers(session, {d.order.customer_external_id for d in deliveries})
    results: list[Written | None] = [None] * len(deliveries)
    newest: dict[str, int] = {}  # order external id → index of its newest delivery in the batch
    for index, delivery in enumerate(deliveries):
        order = delivery.order
        if order.customer_external_id not in customers:
            results[index] = Written(None, False, PayloadError.single(
                f"unknown customer '{order.customer_external_id}'", field="customer_id",
                hint="send the customer's external_id, as imported"))
            continue
        current = newest.get(order.external_id)
        if current is None or _later(delivery, deliveries[current]):
            newest[order.external_id] = index
    chosen = [deliveries[i] for i in newest.values()]
    if dialect.is_postgresql(session):  # the same three steps as one statement (one round trip)
        stored, redeemed = order_statement.write(session, chosen, customers, source=source)
    else:
        stored, redeemed = _upsert(session, chosen, customers, source=source), True
        _replace_items(session, [(stored[d.order.external_id], d.order) for d in chosen
                                 if d.order.external_id in stored])
        _events(session, [(stored[d.order.external_id], customers[d.order.customer_external_id], d)
                          for d in chosen if d.order.external_id in stored], source=source)
    # The codes they carry: redemptions of those codes' messages (or, changed, no longer) —
    # nothing to do when none carries a code and none had a redemption before (most batches).
    if redeemed or any(d.order.coupon_code for d in chosen if d.order.external_id in stored):
        signed = [d.reported_at for d in deliveries if d.reported_at is not None]
        redemptions.record_for_orders(session.connection(), sorted(stored.values()),
                                      now=max(signed, default=utcnow()))
    unknown = [d.order.external_id for i, d in enumerate(deliveries) if results[i] is None
               and d.order.external_id not in stored]
    kept = _ids_of(session, unknown) if unknown else {}
    for index, delivery in enumerate(deliveries):
        if results[index] is not None:
            continue
        external_id = delivery.order.external_id
        written = index == newest.get(external_id) and external_id in stored
        results[index] = Written(stored[external_id] if written else stored.get(external_id, kept.get(external_id)),
                                 written)
    return [r for r in results if r is not None]


def _later(delivery: OrderDelivery, than: OrderDelivery) -> bool:
    """Whether ``delivery`` replaces ``than`` (an unsigned one always does; of
    two signed at the same moment, the first stands)."""
    if delivery.reported_at is None or than.reported_at is None:
        return True
    return delivery.reported_at > than.reported_at


def _locked_customers(session: Session, external_ids: set[str]) -> dict[str, int]:
    rows = session.execute(
        select(CUSTOMERS.c.id, CUSTOMERS.c.external_id)
        .where(dialect.among(session, CUSTOMERS.c.external_id, sorted(external_ids), type_=String))
        .order_by(CUSTOMERS.c.id)
        .with_for_update(key_share=True))  # FOR NO KEY UPDATE
    return {external_id: customer_id for customer_id, external_id in rows}


def _upsert(session: Session, deliveries: list[OrderDelivery], customers: dict[str, int], *,
            source: str) -> dict[str, int]:
    """One statement: each order inserted, or replaced if this delivery is
    newer than the stored version. Returns external id → id of those written."""
    if not deliveries:
        return {}
    rows = [{"external_id": d.order.external_id, "source": source,
             "customer_id": customers[d.order.customer_external_id], "ordered_at": d.order.ordered_at,
             "amount": d.order.amount, "currency": d.order.currency.upper(), "reported_at": d.reported_at,
             "discount": d.order.discount,
             "coupon_code": coupons.normalize_code(d.order.coupon_code) if d.order.coupon_code else None}
            for d in sorted(deliveries, key=lambda d: d.order.external_id)]  # one lock order for every batch
    stmt = dialect.insert(session, ORDERS).values(rows)
    newer = or_(stmt.excluded.reported_at.is_(None), ORDERS.c.reported_at.is_(None),
                ORDERS.c.reported_at < stmt.excluded.reported_at)
    replaced = {name: stmt.excluded[name] for name in
                ("customer_id", "ordered_at", "amount", "currency", "coupon_code", "reported_at", "discount")}
    written = session.execute(
        stmt.on_conflict_do_update(index_elements=["external_id"], set_=replaced, where=newer)
        .returning(ORDERS.c.id, ORDERS.c.external_id))
    return {external_id: order_id for order_id, external_id in written}


def _replace_items(session: Session, orders: list[tuple[int, IncomingOrder]]) -> None:
    if not orders:
        return
    session.execute(delete(ITEMS).where(dialect.among(session, ITEMS.c.order_id, [i for i, _ in orders])))
    lines = [{"order_id": order_id, "sku": item.sku, "category": item.category, "quantity": item.quantity,
              "amount": item.amount} for order_id, order in orders for item in order.items]
    for start in range(0, len(lines), ITEMS_PER_STATEMENT):
        session.execute(insert(ITEMS).values(lines[start:start + ITEMS_PER_STATEMENT]))


def _events(session: Session, written: list[tuple[int, int, OrderDelivery]], *, source: str) -> None:
    """An ORDER event per order, once (a later version of an order is the same event)."""
    if not written:
        return
    rows = [{"type": EventType.ORDER, "occurred_at": d.order.ordered_at, "source": source, "message_id": None,
             "customer_id": customer_id, "order_id": order_id, "url": None,
             "dedupe_key": f"order:{d.order.external_id}", "payload": d.payload, "simulated": d.simulated}
            for order_id, customer_id, d in written]
    session.execute(dialect.insert(session, EVENTS).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"]))


def _ids_of(session: Session, external_ids: list[str]) -> dict[str, int]:
    """The ids of orders this batch left as they were (an older delivery)."""
    rows = session.execute(select(ORDERS.c.external_id, ORDERS.c.id)
                           .where(dialect.among(session, ORDERS.c.external_id, external_ids, type_=String)))
    return {external_id: order_id for external_id, order_id in rows}

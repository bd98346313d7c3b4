"""orders.csv: upsert by external_id; a re-import replaces the order's items.

``customer_id`` is the customer's *external* id. ``items`` lists the lines as
``sku|category|quantity|amount`` separated by ``;`` (everything after the SKU
optional), e.g. ``TEA-001|tea|2|59.00;CUP-01|teaware``. Columns the file does
not have (``currency``, ``coupon_code``, ``discount``, ``items``) are left as
they are on update. ``source`` is ``import`` for orders this creates and kept
otherwise. A coupon code is stored in capitals (shops compare codes without
regard to case); ``discount`` is what the order says the code took off. Every
order written has its coupon redemption made again (``store.redemptions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from outreach.importing.base import (
    Cells,
    CustomerRef,
    Kind,
    Parsed,
    Rejected,
    Written,
    keep_last,
    resolve_customers,
    upsert,
)
from outreach.importing.values import (
    InvalidValue,
    check_length,
    parse_amount,
    parse_currency,
    parse_instant,
    parse_quantity,
)
from outreach.store import redemptions
from outreach.store.coupons import normalize_code
from outreach.store.models import Order, OrderItem

DEFAULT_CURRENCY = "CNY"
ORDER_SOURCE = "import"
ITEM_SEPARATOR, PART_SEPARATOR = ";", "|"
ITEM_PARTS = ("sku", "category", "quantity", "amount")
ITEMS_HINT = "write items like TEA-001|tea|2|59.00;CUP-01|teaware (sku|category|quantity|amount)"
EXTERNAL_ID_MAX, CODE_MAX = 128, 64
#: File columns -> the order columns they set on update (always: customer,
#: time and amount, which every file has).
UPDATES = {"currency": "currency", "coupon_code": "coupon_code", "discount": "discount"}


@dataclass
class Item:
    sku: str
    category: str | None
    quantity: int
    amount: Decimal | None


@dataclass
class OrderRecord:
    external_id: str
    customer: CustomerRef
    ordered_at: datetime
    amount: Decimal
    currency: str
    coupon_code: str | None
    items: list[Item]
    discount: Decimal | None = None


def parse_items(raw: str) -> list[Item]:
    items: list[Item] = []
    for number, entry in enumerate((e for e in raw.split(ITEM_SEPARATOR) if e.strip()), start=1):
        parts = [part.strip() for part in entry.split(PART_SEPARATOR)]
        if len(parts) > len(ITEM_PARTS) or not parts[0]:
            raise InvalidValue(
                f"item {number} '{entry.strip()}' is not sku|category|quantity|amount", hint=ITEMS_HINT
            )
        parts += [""] * (len(ITEM_PARTS) - len(parts))
        sku, category, quantity, amount = parts
        try:
            items.append(
                Item(
                    sku=check_length(sku, CODE_MAX),
                    category=check_length(category, CODE_MAX) or None,
                    quantity=parse_quantity(quantity) if quantity else 1,
                    amount=parse_amount(amount) if amount else None,
                )
            )
        except InvalidValue as exc:
            raise InvalidValue(f"item {number} '{entry.strip()}': {exc.message}", hint=exc.hint) from None
    return items


class Orders(Kind[OrderRecord]):
    name = "orders"
    columns = ("external_id", "customer_id", "ordered_at", "amount", "currency", "coupon_code", "items", "discount")
    required_columns = ("external_id", "customer_id", "ordered_at", "amount")

    def parse(self, cells: Cells) -> OrderRecord | None:
        external_id = cells.required(
            "external_id", lambda s: check_length(s, EXTERNAL_ID_MAX), hint="every order needs its order number"
        )
        customer = cells.required(
            "customer_id", lambda s: check_length(s, EXTERNAL_ID_MAX),
            hint="write the customer's external_id from customers.csv",
        )
        ordered_at = cells.required("ordered_at", parse_instant, hint="write when the order was placed")
        amount = cells.required("amount", parse_amount, hint="write the order total, e.g. 128.00")
        currency = cells.get("currency", parse_currency, DEFAULT_CURRENCY)
        coupon = cells.get("coupon_code", lambda s: normalize_code(check_length(s, CODE_MAX)), None)
        items: list[Item] = cells.get("items", parse_items, [])
        discount = cells.get("discount", parse_amount, None)
        if cells.problems or external_id is None or customer is None or ordered_at is None or amount is None:
            return None
        return OrderRecord(external_id, CustomerRef(customer), ordered_at, amount, currency, coupon, items, discount)

    def resolve(self, conn: Connection, batch: list[Parsed[OrderRecord]]) -> list[Rejected]:
        return resolve_customers(conn, batch, file=self.file)

    def write(self, conn: Connection, batch: list[Parsed[OrderRecord]]) -> Written:
        rows = keep_last(batch, lambda r: r.external_id)
        keys = [p.record.external_id for p in rows]
        existing = set(conn.scalars(select(Order.external_id).where(Order.external_id.in_(keys))))
        update = ["customer_id", "ordered_at", "amount"]
        update += [col for column, col in UPDATES.items() if self.header.has(column)]
        stmt = upsert(conn, Order, key="external_id", update=update)
        params = [self._params(p.record) for p in rows]
        returned = conn.execute(stmt.returning(Order.external_id, Order.id), params)
        ids: dict[str, int] = {ext: pk for ext, pk in returned}
        if self.header.has("items"):
            conn.execute(delete(OrderItem).where(OrderItem.order_id.in_(ids.values())))
            items = [
                {"order_id": ids[p.record.external_id], "sku": i.sku, "category": i.category,
                 "quantity": i.quantity, "amount": i.amount}
                for p in rows
                for i in p.record.items
            ]
            if items:
                conn.execute(insert(OrderItem), items)
        redemptions.record_for_orders(conn, list(ids.values()), now=self.now)
        inserted = len(rows) - len(existing)
        return Written(inserted=inserted, updated=len(batch) - inserted)

    @staticmethod
    def _params(record: OrderRecord) -> dict[str, Any]:
        return {
            "external_id": record.external_id,
            "customer_id": record.customer.id,
            "ordered_at": record.ordered_at,
            "amount": record.amount,
            "currency": record.currency,
            "coupon_code": record.coupon_code,
            "discount": record.discount,
            "source": ORDER_SOURCE,
        }

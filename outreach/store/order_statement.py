"""A batch of orders in one PostgreSQL statement: the upsert, the items and
the ORDER events as one round trip (``outreach.store.order_writes`` on PostgreSQL).

The order webhook's group-commit writer waits on PostgreSQL's round trips
(bench/order_writes_bench.py); written as separate statements, a batch of
eight orders took ten round trips. Here the upsert's ``RETURNING`` feeds, in the same
statement, the items' ``DELETE`` and ``INSERT`` and the events' ``INSERT``
(writable CTEs), joined to the batch by external id. The batch arrives as
arrays (``unnest``), so the statement's text is the same for every batch
(cached, prepared).

Same results as the separate statements:

* the sub-statements see the table as it was before the statement, so the
  ``DELETE`` removes only an updated order's old items, never the new ones;
* each table's statement-level triggers still run once, at the end, and see
  every change (``customer_products`` recomputed for changed items, then the
  new items merged in with ``LEAST``/``GREATEST``: nothing counted twice);
* the rows are inserted in external-id order (one lock order for every batch).

An ``INSERT … ON CONFLICT DO UPDATE`` that both updates orders and inserts
new ones fires the update trigger and the insert trigger one after the
other: ``order_totals`` moves by deltas on update (migration 0019), so the
two commute and nothing is counted twice.

It also says, per order written, whether a coupon redemption was stored for
it before: with no code then and none now there is nothing for
``store.redemptions`` to do, and its look-ups are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from outreach.domain import EventType
from outreach.store import coupons

if TYPE_CHECKING:
    from outreach.store.order_writes import OrderDelivery

_ORDER_COLUMNS = ("external_id", "customer_id", "ordered_at", "amount", "currency", "reported_at", "discount",
                  "coupon_code")
_ORDER_TYPES = ("varchar", "bigint", "timestamp", "numeric", "varchar", "timestamp", "numeric", "varchar")
_REPLACED = ("customer_id", "ordered_at", "amount", "currency", "coupon_code", "reported_at", "discount")


def _arrays(names: Sequence[str], types: Sequence[str]) -> str:
    return ", ".join(f"CAST(:{name} AS {type_}[])" for name, type_ in zip(names, types, strict=True))


WRITE = text(f"""
WITH batch AS (
    SELECT * FROM unnest({_arrays([*_ORDER_COLUMNS, "payload", "simulated"], [*_ORDER_TYPES, "text", "boolean"])})
        AS b({", ".join(_ORDER_COLUMNS)}, payload, simulated)
),
upserted AS (
    INSERT INTO orders AS o (source, {", ".join(_ORDER_COLUMNS)})
    SELECT :source, {", ".join(_ORDER_COLUMNS)} FROM batch ORDER BY external_id
    ON CONFLICT (external_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _REPLACED)}
    WHERE EXCLUDED.reported_at IS NULL OR o.reported_at IS NULL OR o.reported_at < EXCLUDED.reported_at
    RETURNING o.id, o.external_id, o.customer_id, o.xmax = 0 AS inserted
),
old_items AS (  -- an array, not a join: the planner cannot know the CTE is small, and scanned every item
    DELETE FROM order_items WHERE order_id = ANY (ARRAY(SELECT id FROM upserted WHERE NOT inserted))
),
new_items AS (
    INSERT INTO order_items (order_id, sku, category, quantity, amount)
    SELECT u.id, i.sku, i.category, i.quantity, i.amount
    FROM unnest({_arrays(["item_order", "sku", "category", "quantity", "item_amount"],
                         ["varchar", "varchar", "varchar", "integer", "numeric"])})
        WITH ORDINALITY AS i(external_id, sku, category, quantity, amount, n)
    JOIN upserted u ON u.external_id = i.external_id
    ORDER BY i.n
),
events AS (
    INSERT INTO tracking_events (type, occurred_at, source, customer_id, order_id, dedupe_key, payload, simulated)
    SELECT :event_type, b.ordered_at, :source, u.customer_id, u.id, 'order:' || u.external_id,
           CAST(b.payload AS json), b.simulated
    FROM upserted u JOIN batch b ON b.external_id = u.external_id
    ORDER BY u.external_id
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT u.id, u.external_id, u.customer_id, u.inserted,
       NOT u.inserted AND EXISTS (SELECT FROM coupon_redemptions r WHERE r.order_id = u.id) AS redeemed
FROM upserted u
""")


def write(session: Session, deliveries: Sequence[OrderDelivery], customers: dict[str, int], *,
          source: str) -> tuple[dict[str, int], bool]:
    """Upsert the orders of ``deliveries`` (one each), replace their items,
    record their ORDER events: external id → id of the orders written, and
    whether any of those had a redemption stored before."""
    if not deliveries:
        return {}, False
    orders = [d.order for d in deliveries]
    params: dict[str, Any] = {
        "source": source, "event_type": EventType.ORDER.value,
        "external_id": [o.external_id for o in orders],
        "customer_id": [customers[o.customer_external_id] for o in orders],
        "ordered_at": [o.ordered_at for o in orders], "amount": [o.amount for o in orders],
        "currency": [o.currency.upper() for o in orders], "reported_at": [d.reported_at for d in deliveries],
        "discount": [o.discount for o in orders],
        "coupon_code": [coupons.normalize_code(o.coupon_code) if o.coupon_code else None for o in orders],
        "payload": [json.dumps(d.payload) for d in deliveries], "simulated": [d.simulated for d in deliveries],
    }
    lines = [(o.external_id, item) for o in orders for item in o.items]
    params |= {"item_order": [e for e, _ in lines], "sku": [i.sku for _, i in lines],
               "category": [i.category for _, i in lines], "quantity": [i.quantity for _, i in lines],
               "item_amount": [i.amount for _, i in lines]}
    written = session.execute(WRITE, params).all()
    return {external_id: order_id for order_id, external_id, *_ in written}, any(r for *_, r in written)

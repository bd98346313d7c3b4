"""order_totals: an update of orders moves its customers' count and revenue by
the change (old values out, new in) and recomputes only first and last order.

Before, an update recomputed the customers' totals from ``orders``. On
PostgreSQL one ``INSERT … ON CONFLICT DO UPDATE`` that both inserts an order
and updates another of the same customer (a re-import with new rows, a batch
of order webhooks) fires the statement's UPDATE trigger and its INSERT trigger
one after the other: the recompute already saw the new order, and the INSERT
trigger added it again — counted twice. With deltas, the two triggers commute:
the INSERT trigger adds the inserted rows, the UPDATE trigger the change of the
updated ones, in either order; first and last are a min/max (idempotent),
recomputed after the rows are locked, so they see every committed order.
SQLite's triggers are per row and were right; they are unchanged.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 09:00:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0019'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHANGED = ("FROM old_orders o JOIN new_orders n ON n.id = o.id "
           "WHERE (o.customer_id, o.ordered_at, o.amount) IS DISTINCT FROM (n.customer_id, n.ordered_at, n.amount)")

DELTAS = f"""
CREATE OR REPLACE FUNCTION order_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    affected bigint[];
BEGIN
    affected := ARRAY(SELECT o.customer_id {CHANGED} UNION SELECT n.customer_id {CHANGED});
    IF cardinality(affected) = 0 THEN
        RETURN NULL;
    END IF;
    -- Count and revenue by the change: each changed order's old values leave, its new ones join.
    INSERT INTO order_totals (customer_id, order_count, revenue, first_order_at, last_order_at)
    -- (first and last are placeholders where no row exists yet: set just below; NOT NULL is checked first)
    SELECT customer_id, sum(n), sum(amount), coalesce(min(at), 'epoch'), coalesce(max(at), 'epoch') FROM (
        SELECT o.customer_id, -1 AS n, -o.amount AS amount, NULL::timestamp AS at {CHANGED}
        UNION ALL
        SELECT n.customer_id, 1, n.amount, n.ordered_at {CHANGED}
    ) change GROUP BY customer_id ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET
        order_count = order_totals.order_count + EXCLUDED.order_count,
        revenue = order_totals.revenue + EXCLUDED.revenue;
    -- First and last order recomputed (a later statement, the rows now locked: it sees every committed order).
    UPDATE order_totals t SET first_order_at = a.first_at, last_order_at = a.last_at
    FROM (SELECT customer_id, min(ordered_at) AS first_at, max(ordered_at) AS last_at FROM orders
          WHERE customer_id = ANY(affected) GROUP BY customer_id) a
    WHERE t.customer_id = a.customer_id;
    DELETE FROM order_totals WHERE customer_id = ANY(affected) AND order_count <= 0;
    RETURN NULL;
END $$
"""

RECOMPUTE = f"""
CREATE OR REPLACE FUNCTION order_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM order_totals_recompute(ARRAY(
        SELECT o.customer_id {CHANGED}
        UNION
        SELECT n.customer_id {CHANGED}
    ));
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DELTAS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RECOMPUTE)

"""what each customer ever bought, maintained by triggers

One row per (customer, SKU, category) with the first and last purchase, kept
by the database on every write to ``orders`` and ``order_items`` — so "never
bought teaware" reads each candidate's few rows (or one index) instead of
joining every order line. Same scheme as ``order_totals`` (0002): inserts add
set-based; updates and deletes recompute the affected customers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = "customer_id, sku, category, first_bought_at, last_bought_at"
BOUGHT = ("o.customer_id, i.sku, COALESCE(i.category, ''), min(o.ordered_at), max(o.ordered_at) "
          "FROM orders o JOIN order_items i ON i.order_id = o.id")
GROUPS = "GROUP BY o.customer_id, i.sku, COALESCE(i.category, '')"

POSTGRESQL = [
    f"""
    CREATE FUNCTION customer_products_recompute(affected bigint[]) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM customer_products WHERE customer_id = ANY(affected);
        INSERT INTO customer_products ({COLUMNS})
        SELECT {BOUGHT} WHERE o.customer_id = ANY(affected) {GROUPS};
    END $$
    """,
    f"""
    CREATE FUNCTION customer_products_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO customer_products ({COLUMNS})
        SELECT {BOUGHT.replace("JOIN order_items i", "JOIN new_items i")} {GROUPS}
        ORDER BY 1, 2, 3
        ON CONFLICT (customer_id, sku, category) DO UPDATE SET
            first_bought_at = LEAST(customer_products.first_bought_at, EXCLUDED.first_bought_at),
            last_bought_at = GREATEST(customer_products.last_bought_at, EXCLUDED.last_bought_at);
        RETURN NULL;
    END $$
    """,
    # Items changed or removed: their orders' customers (an order deleted
    # with its items is handled by the orders trigger below).
    """
    CREATE FUNCTION customer_products_items_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM customer_products_recompute(ARRAY(
            SELECT DISTINCT o.customer_id FROM orders o
            WHERE o.id IN (SELECT order_id FROM old_items UNION SELECT order_id FROM new_items)));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION customer_products_items_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM customer_products_recompute(ARRAY(
            SELECT DISTINCT o.customer_id FROM orders o WHERE o.id IN (SELECT order_id FROM old_items)));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION customer_products_orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM customer_products_recompute(ARRAY(
            SELECT o.customer_id FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE (o.customer_id, o.ordered_at) IS DISTINCT FROM (n.customer_id, n.ordered_at)
            UNION
            SELECT n.customer_id FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE (o.customer_id, o.ordered_at) IS DISTINCT FROM (n.customer_id, n.ordered_at)));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION customer_products_orders_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM customer_products_recompute(ARRAY(SELECT DISTINCT customer_id FROM old_orders));
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER customer_products_insert AFTER INSERT ON order_items
       REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT EXECUTE FUNCTION customer_products_add()""",
    """CREATE TRIGGER customer_products_update AFTER UPDATE ON order_items
       REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
       FOR EACH STATEMENT EXECUTE FUNCTION customer_products_items_changed()""",
    """CREATE TRIGGER customer_products_delete AFTER DELETE ON order_items
       REFERENCING OLD TABLE AS old_items FOR EACH STATEMENT EXECUTE FUNCTION customer_products_items_removed()""",
    """CREATE TRIGGER customer_products_orders_update AFTER UPDATE ON orders
       REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
       FOR EACH STATEMENT EXECUTE FUNCTION customer_products_orders_changed()""",
    """CREATE TRIGGER customer_products_orders_delete AFTER DELETE ON orders
       REFERENCING OLD TABLE AS old_orders FOR EACH STATEMENT EXECUTE FUNCTION customer_products_orders_removed()""",
]

SQLITE_RECOMPUTE = f"""
        DELETE FROM customer_products WHERE customer_id IN ({{ids}});
        INSERT INTO customer_products ({COLUMNS})
        SELECT {BOUGHT} WHERE o.customer_id IN ({{ids}}) {GROUPS};"""
ORDER_OF = "(SELECT customer_id FROM orders WHERE id = {item}.order_id)"

SQLITE = [
    f"""
    CREATE TRIGGER customer_products_insert AFTER INSERT ON order_items BEGIN
        INSERT INTO customer_products ({COLUMNS})
        SELECT o.customer_id, NEW.sku, COALESCE(NEW.category, ''), o.ordered_at, o.ordered_at
        FROM orders o WHERE o.id = NEW.order_id
        ON CONFLICT (customer_id, sku, category) DO UPDATE SET
            first_bought_at = min(first_bought_at, excluded.first_bought_at),
            last_bought_at = max(last_bought_at, excluded.last_bought_at);
    END
    """,
    f"""
    CREATE TRIGGER customer_products_update AFTER UPDATE OF order_id, sku, category ON order_items
    BEGIN{SQLITE_RECOMPUTE.format(ids=ORDER_OF.format(item="OLD") + ", " + ORDER_OF.format(item="NEW"))}
    END
    """,
    f"""
    CREATE TRIGGER customer_products_delete AFTER DELETE ON order_items
    BEGIN{SQLITE_RECOMPUTE.format(ids=ORDER_OF.format(item="OLD"))}
    END
    """,
    f"""
    CREATE TRIGGER customer_products_orders_update AFTER UPDATE OF customer_id, ordered_at ON orders
    WHEN OLD.customer_id IS NOT NEW.customer_id OR OLD.ordered_at IS NOT NEW.ordered_at
    BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id, NEW.customer_id")}
    END
    """,
    f"""
    CREATE TRIGGER customer_products_orders_delete AFTER DELETE ON orders
    BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id")}
    END
    """,
]
TRIGGERS = {
    "customer_products_insert": "order_items", "customer_products_update": "order_items",
    "customer_products_delete": "order_items", "customer_products_orders_update": "orders",
    "customer_products_orders_delete": "orders",
}
FUNCTIONS = ("customer_products_recompute(bigint[])", "customer_products_add()",
             "customer_products_items_changed()", "customer_products_items_removed()",
             "customer_products_orders_changed()", "customer_products_orders_removed()")


def upgrade() -> None:
    op.create_table('customer_products',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('first_bought_at', sa.DateTime(), nullable=False),
    sa.Column('last_bought_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_products_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'sku', 'category', name=op.f('pk_customer_products'))
    )
    op.execute(f"INSERT INTO customer_products ({COLUMNS}) SELECT {BOUGHT} {GROUPS}")
    with op.batch_alter_table('customer_products', schema=None) as batch_op:
        batch_op.create_index('ix_customer_products_category', ['category', 'customer_id', 'first_bought_at'], unique=False)
        batch_op.create_index('ix_customer_products_sku', ['sku', 'customer_id', 'first_bought_at'], unique=False)
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger, table in TRIGGERS.items():
        op.execute(f"DROP TRIGGER {trigger} ON {table}" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        for function in FUNCTIONS:
            op.execute(f"DROP FUNCTION {function}")
    with op.batch_alter_table('customer_products', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_products_sku')
        batch_op.drop_index('ix_customer_products_category')
    op.drop_table('customer_products')

"""order totals maintained by triggers on orders; customer_stats as a cache

``customer_stats`` is rebuilt whole by every refresh: it records the
lifecycle thresholds it was computed with (``params``), loses its foreign key
(checking a million keys on each rebuild cost more than writing the rows) and,
on PostgreSQL, becomes UNLOGGED (no WAL; emptied after a crash, then rebuilt
by the next evaluation). Its rows are recomputed, so it is simply recreated.

Every customer's all-time order count, revenue, first and last order, kept by
the database on every insert, update and delete of ``orders`` — whatever
writes them (CSV import, the order webhook, a script) — so rule evaluation
reads one narrow row per customer instead of aggregating every order.

* PostgreSQL: statement-level triggers with transition tables, so a bulk
  import adds its orders to the totals in one set-based statement. Updates
  and deletes delete the affected totals rows (taking their locks), then
  recompute them from ``orders`` in a later statement, which sees every
  order committed by then.
* SQLite: row-level triggers (SQLite has no statement-level ones); one
  indexed lookup per changed order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = "customer_id, order_count, revenue, first_order_at, last_order_at"
AGGREGATE = "customer_id, count(*), sum(amount), min(ordered_at), max(ordered_at)"

POSTGRESQL = [
    f"""
    CREATE FUNCTION order_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO order_totals ({COLUMNS})
        SELECT {AGGREGATE} FROM new_orders GROUP BY customer_id ORDER BY customer_id
        ON CONFLICT (customer_id) DO UPDATE SET
            order_count = order_totals.order_count + EXCLUDED.order_count,
            revenue = order_totals.revenue + EXCLUDED.revenue,
            first_order_at = LEAST(order_totals.first_order_at, EXCLUDED.first_order_at),
            last_order_at = GREATEST(order_totals.last_order_at, EXCLUDED.last_order_at);
        RETURN NULL;
    END $$
    """,
    # Recompute the given customers from orders. The DELETE takes the rows'
    # locks (waiting for a concurrent writer of the same customer to commit);
    # the INSERT is a later statement, so it sees every order committed by then.
    f"""
    CREATE FUNCTION order_totals_recompute(affected bigint[]) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM order_totals WHERE customer_id = ANY(affected);
        INSERT INTO order_totals ({COLUMNS})
        SELECT {AGGREGATE} FROM orders WHERE customer_id = ANY(affected) GROUP BY customer_id;
    END $$
    """,
    """
    CREATE FUNCTION order_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM order_totals_recompute(ARRAY(
            SELECT o.customer_id FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE (o.customer_id, o.ordered_at, o.amount) IS DISTINCT FROM (n.customer_id, n.ordered_at, n.amount)
            UNION
            SELECT n.customer_id FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE (o.customer_id, o.ordered_at, o.amount) IS DISTINCT FROM (n.customer_id, n.ordered_at, n.amount)
        ));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION order_totals_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM order_totals_recompute(ARRAY(SELECT DISTINCT customer_id FROM old_orders));
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER order_totals_insert AFTER INSERT ON orders
       REFERENCING NEW TABLE AS new_orders FOR EACH STATEMENT EXECUTE FUNCTION order_totals_add()""",
    """CREATE TRIGGER order_totals_update AFTER UPDATE ON orders
       REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
       FOR EACH STATEMENT EXECUTE FUNCTION order_totals_changed()""",
    """CREATE TRIGGER order_totals_delete AFTER DELETE ON orders
       REFERENCING OLD TABLE AS old_orders FOR EACH STATEMENT EXECUTE FUNCTION order_totals_removed()""",
]

SQLITE_RECOMPUTE = f"""
        DELETE FROM order_totals WHERE customer_id IN ({{ids}});
        INSERT INTO order_totals ({COLUMNS})
        SELECT {AGGREGATE} FROM orders WHERE customer_id IN ({{ids}}) GROUP BY customer_id;"""

SQLITE = [
    f"""
    CREATE TRIGGER order_totals_insert AFTER INSERT ON orders BEGIN
        INSERT INTO order_totals ({COLUMNS})
        VALUES (NEW.customer_id, 1, NEW.amount, NEW.ordered_at, NEW.ordered_at)
        ON CONFLICT (customer_id) DO UPDATE SET
            order_count = order_count + 1,
            revenue = revenue + excluded.revenue,
            first_order_at = min(first_order_at, excluded.first_order_at),
            last_order_at = max(last_order_at, excluded.last_order_at);
    END
    """,
    f"""
    CREATE TRIGGER order_totals_update AFTER UPDATE OF customer_id, ordered_at, amount ON orders
    WHEN OLD.customer_id IS NOT NEW.customer_id OR OLD.ordered_at IS NOT NEW.ordered_at
         OR OLD.amount IS NOT NEW.amount
    BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id, NEW.customer_id")}
    END
    """,
    f"""
    CREATE TRIGGER order_totals_delete AFTER DELETE ON orders BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id")}
    END
    """,
]


def _customer_stats(*, unlogged: bool, params: bool = True) -> None:
    op.create_table('customer_stats',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('as_of', sa.DateTime(), nullable=False),
    *([sa.Column('params', sa.String(length=256), nullable=False)] if params else []),
    sa.Column('order_count', sa.Integer(), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('first_order_at', sa.DateTime(), nullable=True),
    sa.Column('last_order_at', sa.DateTime(), nullable=True),
    sa.Column('orders_12m', sa.Integer(), nullable=False),
    sa.Column('revenue_12m', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('r_score', sa.SmallInteger(), nullable=True),
    sa.Column('f_score', sa.SmallInteger(), nullable=True),
    sa.Column('m_score', sa.SmallInteger(), nullable=True),
    sa.Column('rfm_segment', sa.String(length=24), nullable=True),
    sa.Column('value_tier', sa.String(length=16), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('clv', sa.Numeric(precision=16, scale=2), nullable=True),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_stats')),
    prefixes=['UNLOGGED'] if unlogged else [],
    )
    with op.batch_alter_table('customer_stats', schema=None) as batch_op:
        batch_op.create_index('ix_customer_stats_rfm', ['rfm_segment'], unique=False)
        batch_op.create_index('ix_customer_stats_stage', ['lifecycle_stage'], unique=False)


def upgrade() -> None:
    op.drop_table('customer_stats')
    _customer_stats(unlogged=op.get_bind().dialect.name == "postgresql")
    op.create_table('order_totals',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_count', sa.Integer(), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('first_order_at', sa.DateTime(), nullable=False),
    sa.Column('last_order_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_order_totals_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_order_totals'))
    )
    with op.batch_alter_table('order_totals', schema=None) as batch_op:
        batch_op.create_index('ix_order_totals_last', ['last_order_at'], unique=False)
    # Orders already in the database (an upgrade of an existing installation).
    op.execute(f"INSERT INTO order_totals ({COLUMNS}) SELECT {AGGREGATE} FROM orders GROUP BY customer_id")
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER order_totals_{trigger} ON orders")
        for function in ("order_totals_add()", "order_totals_changed()", "order_totals_removed()",
                         "order_totals_recompute(bigint[])"):
            op.execute(f"DROP FUNCTION {function}")
    else:
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER order_totals_{trigger}")
    with op.batch_alter_table('order_totals', schema=None) as batch_op:
        batch_op.drop_index('ix_order_totals_last')
    op.drop_table('order_totals')
    # The cache comes back as revision 0001 made it (empty; rebuilt on demand).
    op.drop_table('customer_stats')
    _customer_stats(unlogged=False, params=False)
    with op.batch_alter_table('customer_stats', schema=None) as batch_op:
        batch_op.create_foreign_key(op.f('fk_customer_stats_customer_id_customers'), 'customers',
                                    ['customer_id'], ['id'], ondelete='CASCADE')

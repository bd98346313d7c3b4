"""window_orders: each measured message's orders inside its window, with what the report reads, kept by triggers

The report adds up, per measured message, the orders of its customer inside
its attribution window. Re-deriving the windows on every report is one join of
every measured message with its customer's orders (~20 s at 5M messages / 10M
orders); the pairs themselves are few (~1.2M there). This table keeps the pairs
(message, order) as rows are written, each with the columns the report reads of
both (rule, variant, group, plan and send time; order time, amount, currency,
source), so the report adds up one narrow table and joins nothing.

The window is ``store.variants``'s: a message is measured when its status is
``sent`` or ``held_out``; its window runs from ``sent_at`` (``planned_at`` for
a held-out row) exclusive to ``attribute_until`` inclusive.

* orders: an insert adds the pairs with the customer's measured messages whose
  window holds ``ordered_at``; an update of a column a pair carries or of
  ``customer_id`` deletes and re-derives that order's pairs; a delete cascades.
* messages: an insert of a measured row (held-out rows at planning; backdated
  or imported sent rows) adds its pairs; an update of a window column or of a
  column a pair carries deletes and re-derives that message's pairs (only for
  rows measured before or after); a delete cascades.

PostgreSQL: statement-level triggers with transition tables (a batch of sent
messages or an import of orders is one set-based statement). A trigger with
transition tables cannot be ``UPDATE OF columns``, so the update triggers fire
on every update and keep only rows whose columns changed; claiming a batch
(queued → sending) changes no measured row and costs one empty scan of the
transition table.

Concurrency (PostgreSQL, READ COMMITTED): each trigger reads the other table as
committed when it runs. So that an order and a message of the same customer
written by two transactions at the same moment are still paired, the triggers
that have pairs to look for take one transaction-level advisory lock (key
``LOCK_KEY``): messages in shared mode (workers finishing batches do not wait
for each other), orders in exclusive mode. The second of two such transactions
waits for the first to commit, and its look-up (a new snapshot: the trigger
functions are volatile) then sees the first one's rows. The cost: a transaction
writing orders (an order webhook batch, a CSV import of orders) and a worker
recording a batch as sent wait for each other's commit.
SQLite: row-level triggers; SQLite has one writer at a time.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 11:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0020'
down_revision: Union[str, Sequence[str], None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MEASURED = "('sent', 'held_out')"
#: pg_advisory_xact_lock's key: one 64-bit number for "window_orders" (any constant the product uses nowhere else).
LOCK_KEY = 7_210_020
#: What a pair carries, in the order of ``_values``.
COLUMNS = ("message_id", "order_id", "rule_id", "variant", "held_out", "planned_at", "sent_at", "ordered_at",
           "amount", "currency", "source")
#: The columns of messages and orders a pair depends on: a change of one re-derives the row's pairs.
MESSAGE_COLUMNS = ("status", "sent_at", "planned_at", "attribute_until", "customer_id", "rule_id", "variant")
ORDER_COLUMNS = ("customer_id", "ordered_at", "amount", "currency", "source")


def _start(m: str) -> str:
    return f"CASE WHEN {m}.status = 'held_out' THEN {m}.planned_at ELSE {m}.sent_at END"


def _inside(m: str, o: str, *, status: str = "") -> str:
    """The condition that order ``o`` is inside measured message ``m``'s window (the same customer aside);
    ``status``: an operator before the status column (SQLite's unary + keeps a term off its indexes)."""
    return (f"{status}{m}.status IN {MEASURED} AND {o}.ordered_at > {_start(m)}"
            f" AND {o}.ordered_at <= {m}.attribute_until")


def _pairs(m: str, o: str, *, status: str = "") -> str:
    """The condition that order ``o`` is inside measured message ``m``'s window."""
    return f"{o}.customer_id = {m}.customer_id AND {_inside(m, o, status=status)}"


#: The messages of order ``n``'s customer, found by customer: the fence (OFFSET 0) keeps PostgreSQL from
#: reading the measured messages by status instead (a plan its statistics can pick while few are sent,
#: which then reads every sent message for each order).
CUSTOMERS_MESSAGES = ("LATERAL (SELECT m.id, m.rule_id, m.variant, m.status, m.planned_at, m.sent_at, m.attribute_until"
                      " FROM messages m WHERE m.customer_id = n.customer_id OFFSET 0) m")


def _values(m: str, o: str) -> str:
    return (f"{m}.id, {o}.id, {m}.rule_id, {m}.variant, {m}.status = 'held_out', {m}.planned_at, {m}.sent_at,"
            f" {o}.ordered_at, {o}.amount, {o}.currency, {o}.source")


def _changed(columns: Sequence[str], old: str, new: str, differ: str) -> str:
    return (f"({', '.join(f'{old}.{c}' for c in columns)}) {differ}"
            f" ({', '.join(f'{new}.{c}' for c in columns)})")


INSERT = f"INSERT INTO window_orders ({', '.join(COLUMNS)})"


def _rederive(table: str, columns: Sequence[str], *, when: str, before: str, lock: str, key: str, pairs: str) -> str:
    """The statement trigger function for an update of ``table``: the rows
    (``when``) whose ``columns`` changed lose their pairs (those that could
    have any: ``before``, over their old values), which are derived
    again from ``pairs`` (a FROM … WHERE over the ids in ``moved``): from the
    statement's new rows (the transition table), never by looking them up again."""
    return f"""
    CREATE FUNCTION window_orders_{table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        moved bigint[];
    BEGIN
        moved := ARRAY(SELECT n.id FROM old_{table} o JOIN new_{table} n ON n.id = o.id
                       WHERE {when} AND {_changed(columns, 'o', 'n', 'IS DISTINCT FROM')});
        IF cardinality(moved) = 0 THEN
            RETURN NULL;
        END IF;
        PERFORM {lock}({LOCK_KEY});
        DELETE FROM window_orders w USING old_{table} o WHERE o.id = ANY(moved) AND {before} AND w.{key} = o.id;
        {INSERT}
        SELECT {_values('m', 'n')} FROM {pairs}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """


POSTGRESQL = [
    f"""
    CREATE FUNCTION window_orders_orders_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_KEY});
        {INSERT}
        SELECT {_values('m', 'n')} FROM new_orders n CROSS JOIN {CUSTOMERS_MESSAGES} WHERE {_inside('m', 'n')}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    _rederive("orders", ORDER_COLUMNS, when="TRUE", before="TRUE", lock="pg_advisory_xact_lock", key="order_id",
              pairs=f"new_orders n CROSS JOIN {CUSTOMERS_MESSAGES} WHERE n.id = ANY(moved) AND {_inside('m', 'n')}"),
    f"""
    CREATE FUNCTION window_orders_messages_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM new_messages WHERE status IN {MEASURED}) THEN
            RETURN NULL;
        END IF;
        PERFORM pg_advisory_xact_lock_shared({LOCK_KEY});
        {INSERT}
        SELECT {_values('m', 'n')} FROM new_messages m JOIN orders n ON {_pairs('m', 'n')}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    # Claiming and finishing a batch update its messages: only rows measured
    # before or after whose columns changed are re-derived.
    _rederive("messages", MESSAGE_COLUMNS, when=f"(o.status IN {MEASURED} OR n.status IN {MEASURED})",
              before=f"o.status IN {MEASURED}", lock="pg_advisory_xact_lock_shared", key="message_id",
              pairs=f"new_messages m JOIN orders n ON {_pairs('m', 'n')} WHERE m.id = ANY(moved)"),
    """CREATE TRIGGER window_orders_orders_insert AFTER INSERT ON orders
       REFERENCING NEW TABLE AS new_orders FOR EACH STATEMENT EXECUTE FUNCTION window_orders_orders_added()""",
    """CREATE TRIGGER window_orders_orders_update AFTER UPDATE ON orders
       REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
       FOR EACH STATEMENT EXECUTE FUNCTION window_orders_orders_changed()""",
    """CREATE TRIGGER window_orders_messages_insert AFTER INSERT ON messages
       REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION window_orders_messages_added()""",
    """CREATE TRIGGER window_orders_messages_update AFTER UPDATE ON messages
       REFERENCING OLD TABLE AS old_messages NEW TABLE AS new_messages
       FOR EACH STATEMENT EXECUTE FUNCTION window_orders_messages_changed()""",
]

#: SQLite: the unary + keeps the status term from choosing ix_messages_status over the customer's index.
SQLITE_PAIRS = _pairs('m', 'NEW', status="+")

SQLITE = [
    f"""
    CREATE TRIGGER window_orders_orders_insert AFTER INSERT ON orders BEGIN
        INSERT OR IGNORE INTO window_orders ({', '.join(COLUMNS)})
        SELECT {_values('m', 'NEW')} FROM messages m WHERE {SQLITE_PAIRS};
    END
    """,
    f"""
    CREATE TRIGGER window_orders_orders_update AFTER UPDATE OF {', '.join(ORDER_COLUMNS)} ON orders
    WHEN {_changed(ORDER_COLUMNS, 'OLD', 'NEW', 'IS NOT')}
    BEGIN
        DELETE FROM window_orders WHERE order_id = OLD.id;
        INSERT OR IGNORE INTO window_orders ({', '.join(COLUMNS)})
        SELECT {_values('m', 'NEW')} FROM messages m WHERE {SQLITE_PAIRS};
    END
    """,
    f"""
    CREATE TRIGGER window_orders_messages_insert AFTER INSERT ON messages WHEN NEW.status IN {MEASURED} BEGIN
        INSERT OR IGNORE INTO window_orders ({', '.join(COLUMNS)})
        SELECT {_values('NEW', 'n')} FROM orders n WHERE {_pairs('NEW', 'n')};
    END
    """,
    f"""
    CREATE TRIGGER window_orders_messages_update AFTER UPDATE OF {', '.join(MESSAGE_COLUMNS)} ON messages
    WHEN (OLD.status IN {MEASURED} OR NEW.status IN {MEASURED})
         AND {_changed(MESSAGE_COLUMNS, 'OLD', 'NEW', 'IS NOT')}
    BEGIN
        DELETE FROM window_orders WHERE message_id = OLD.id;
        INSERT OR IGNORE INTO window_orders ({', '.join(COLUMNS)})
        SELECT {_values('NEW', 'n')} FROM orders n WHERE {_pairs('NEW', 'n')};
    END
    """,
]

TRIGGERS = {"window_orders_orders_insert": "orders", "window_orders_orders_update": "orders",
            "window_orders_messages_insert": "messages", "window_orders_messages_update": "messages"}
FUNCTIONS = ("window_orders_orders_added", "window_orders_orders_changed", "window_orders_messages_added",
             "window_orders_messages_changed")


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table('window_orders',
    sa.Column('message_id', big, nullable=False),
    sa.Column('order_id', big, nullable=False),
    sa.Column('rule_id', big, nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('held_out', sa.Boolean(), nullable=False),
    sa.Column('planned_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('ordered_at', sa.DateTime(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_window_orders_message_id_messages'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_window_orders_order_id_orders'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'order_id', name=op.f('pk_window_orders'))
    )
    op.create_index('ix_window_orders_order', 'window_orders', ['order_id'], unique=False)
    # The pairs of the messages and orders already there (an upgrade of an existing installation).
    op.execute(f"{INSERT} SELECT {_values('m', 'n')} FROM messages m JOIN orders n ON {_pairs('m', 'n')}")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)
    if postgresql:
        op.execute("ANALYZE window_orders")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger, table in TRIGGERS.items():
        op.execute(f"DROP TRIGGER {trigger} ON {table}" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        for function in FUNCTIONS:
            op.execute(f"DROP FUNCTION {function}()")
    op.drop_index('ix_window_orders_order', table_name='window_orders')
    op.drop_table('window_orders')

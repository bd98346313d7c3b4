"""message keys on tracking_events and coupons: their message's rule (and variant, plan time), kept by triggers

The report counts, per rule, the messages with an open, click or unsubscribe
and the messages given a code. Both read only the rule (and the variant and
plan time, for A/B figures and ``--since/--until``) of each row's message, and
joining 1.3M events and 1M codes to 5M messages for it took about a second
each. These columns copy them, so the report reads the two tables alone:

* ``tracking_events.rule_id``, ``planned_at``;
* ``coupons.rule_id``, ``variant``, ``planned_at``.

They are filled from ``messages`` when the row is written or its
``message_id`` changes (a ``SET NULL`` on deleting the message empties them),
and follow an update of those columns of the message; NULL without a message.
PostgreSQL: row-level BEFORE triggers (one look-up by primary key per row).
SQLite: row-level AFTER triggers.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 11:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0021'
down_revision: Union[str, Sequence[str], None] = '0020'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: table → the message's columns it keeps a copy of.
COPIES = {"tracking_events": ("rule_id", "planned_at"), "coupons": ("rule_id", "variant", "planned_at")}
KEYS = ("rule_id", "variant", "planned_at")


def _postgresql(table: str, columns: Sequence[str]) -> list[str]:
    into = ", ".join(f"NEW.{c}" for c in columns)
    nulls = " ".join(f"NEW.{c} := NULL;" for c in columns)
    return [
        f"""
        CREATE FUNCTION {table}_message_keys() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.message_id IS NULL THEN
                {nulls}
            ELSE
                SELECT {", ".join(f"m.{c}" for c in columns)} INTO {into} FROM messages m WHERE m.id = NEW.message_id;
            END IF;
            RETURN NEW;
        END $$
        """,
        f"""CREATE TRIGGER {table}_message_keys BEFORE INSERT OR UPDATE OF message_id ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_message_keys()""",
    ]


def _sqlite(table: str, columns: Sequence[str]) -> list[str]:
    copied = ", ".join(f"{c} = (SELECT m.{c} FROM messages m WHERE m.id = NEW.message_id)" for c in columns)
    return [
        f"""CREATE TRIGGER {table}_message_keys_insert AFTER INSERT ON {table} WHEN NEW.message_id IS NOT NULL
            BEGIN UPDATE {table} SET {copied} WHERE id = NEW.id; END""",
        f"""CREATE TRIGGER {table}_message_keys_update AFTER UPDATE OF message_id ON {table}
            BEGIN UPDATE {table} SET {copied} WHERE id = NEW.id; END""",
    ]


#: An update of a message's rule, variant or plan time (the product makes none) reaches the copies.
POSTGRESQL_MESSAGES = [
    f"""
    CREATE FUNCTION messages_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {" ".join(f"UPDATE {t} SET {', '.join(f'{c} = NEW.{c}' for c in cs)} WHERE message_id = NEW.id;"
                  for t, cs in COPIES.items())}
        RETURN NULL;
    END $$
    """,
    f"""CREATE TRIGGER messages_keys_changed AFTER UPDATE OF {", ".join(KEYS)} ON messages FOR EACH ROW
        WHEN (({", ".join(f"OLD.{c}" for c in KEYS)}) IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in KEYS)}))
        EXECUTE FUNCTION messages_keys_changed()""",
]
SQLITE_MESSAGES = [
    f"""CREATE TRIGGER messages_keys_changed AFTER UPDATE OF {", ".join(KEYS)} ON messages
        WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in KEYS)}
        BEGIN {" ".join(f"UPDATE {t} SET {', '.join(f'{c} = NEW.{c}' for c in cs)} WHERE message_id = NEW.id;"
                        for t, cs in COPIES.items())} END""",
]


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    with op.batch_alter_table('tracking_events') as batch:
        batch.add_column(sa.Column('rule_id', big, nullable=True))
        batch.add_column(sa.Column('planned_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('coupons') as batch:
        batch.add_column(sa.Column('rule_id', big, nullable=True))
        batch.add_column(sa.Column('variant', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('planned_at', sa.DateTime(), nullable=True))
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, columns in COPIES.items():
        # The rows already there (an upgrade of an existing installation), set-based.
        if postgresql:
            op.execute(f"UPDATE {table} t SET {', '.join(f'{c} = m.{c}' for c in columns)} FROM messages m "
                       f"WHERE m.id = t.message_id")
        else:
            op.execute(f"UPDATE {table} SET " + ", ".join(
                f"{c} = (SELECT m.{c} FROM messages m WHERE m.id = {table}.message_id)" for c in columns)
                + " WHERE message_id IS NOT NULL")
        for statement in _postgresql(table, columns) if postgresql else _sqlite(table, columns):
            op.execute(statement)
    for statement in POSTGRESQL_MESSAGES if postgresql else SQLITE_MESSAGES:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER messages_keys_changed ON messages")
        op.execute("DROP FUNCTION messages_keys_changed()")
    else:
        op.execute("DROP TRIGGER messages_keys_changed")
    for table, columns in COPIES.items():
        if postgresql:
            op.execute(f"DROP TRIGGER {table}_message_keys ON {table}")
            op.execute(f"DROP FUNCTION {table}_message_keys()")
        else:
            op.execute(f"DROP TRIGGER {table}_message_keys_insert")
            op.execute(f"DROP TRIGGER {table}_message_keys_update")
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)

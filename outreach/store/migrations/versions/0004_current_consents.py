"""each customer's current consent per channel, maintained by triggers

``consents`` is the ledger (append-only in practice; the latest row per
channel wins). ``current_consents`` holds that latest row — status, when it
was recorded and which ledger row it is — for every (customer, channel),
kept by the database on every write to ``consents``, whoever writes (CSV
import, the unsubscribe and STOP webhooks, the ORM, plain SQL). Planning
joins it once instead of searching each candidate's ledger twice per row.

Same scheme as ``order_totals`` (0002): inserts upsert set-based (the newer
row by (recorded_at, id) wins); updates and deletes recompute the affected
customers from the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = "customer_id, channel, status, recorded_at, consent_id"
NEWER = ("(EXCLUDED.recorded_at > current_consents.recorded_at OR (EXCLUDED.recorded_at = "
         "current_consents.recorded_at AND EXCLUDED.consent_id > current_consents.consent_id))")
UPSERT = ("ON CONFLICT (customer_id, channel) DO UPDATE SET status = EXCLUDED.status, "
          f"recorded_at = EXCLUDED.recorded_at, consent_id = EXCLUDED.consent_id WHERE {NEWER}")
#: The latest ledger row of each (customer, channel) among ``{where}``
#: (portable: no DISTINCT ON, so SQLite runs the same statement).
LATEST = """
    SELECT c.customer_id, c.channel, c.status, c.recorded_at, c.id FROM consents c
    WHERE {where} AND NOT EXISTS (
        SELECT 1 FROM consents l WHERE l.customer_id = c.customer_id AND l.channel = c.channel
        AND (l.recorded_at > c.recorded_at OR (l.recorded_at = c.recorded_at AND l.id > c.id)))"""

POSTGRESQL = [
    f"""
    CREATE FUNCTION current_consents_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO current_consents ({COLUMNS})
        SELECT DISTINCT ON (customer_id, channel) customer_id, channel, status, recorded_at, id
        FROM new_consents ORDER BY customer_id, channel, recorded_at DESC, id DESC
        {UPSERT};
        RETURN NULL;
    END $$
    """,
    # The DELETE takes the rows' locks (waiting for a concurrent writer of the
    # same customer); the INSERT, a later statement, sees what was committed.
    f"""
    CREATE FUNCTION current_consents_recompute(affected bigint[]) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM current_consents WHERE customer_id = ANY(affected);
        INSERT INTO current_consents ({COLUMNS})
        {LATEST.format(where="c.customer_id = ANY(affected)")}
        {UPSERT};
    END $$
    """,
    """
    CREATE FUNCTION current_consents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM current_consents_recompute(ARRAY(
            SELECT customer_id FROM old_consents UNION SELECT customer_id FROM new_consents));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION current_consents_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM current_consents_recompute(ARRAY(SELECT DISTINCT customer_id FROM old_consents));
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER current_consents_insert AFTER INSERT ON consents
       REFERENCING NEW TABLE AS new_consents FOR EACH STATEMENT EXECUTE FUNCTION current_consents_add()""",
    """CREATE TRIGGER current_consents_update AFTER UPDATE ON consents
       REFERENCING OLD TABLE AS old_consents NEW TABLE AS new_consents
       FOR EACH STATEMENT EXECUTE FUNCTION current_consents_changed()""",
    """CREATE TRIGGER current_consents_delete AFTER DELETE ON consents
       REFERENCING OLD TABLE AS old_consents FOR EACH STATEMENT EXECUTE FUNCTION current_consents_removed()""",
]

SQLITE_RECOMPUTE = f"""
        DELETE FROM current_consents WHERE customer_id IN ({{ids}});
        INSERT INTO current_consents ({COLUMNS}) {LATEST.format(where="c.customer_id IN ({ids})")};"""

SQLITE = [
    f"""
    CREATE TRIGGER current_consents_insert AFTER INSERT ON consents BEGIN
        INSERT INTO current_consents ({COLUMNS})
        VALUES (NEW.customer_id, NEW.channel, NEW.status, NEW.recorded_at, NEW.id)
        {UPSERT.replace("EXCLUDED.", "excluded.")};
    END
    """,
    f"""
    CREATE TRIGGER current_consents_update AFTER UPDATE OF customer_id, channel, status, recorded_at ON consents
    BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id, NEW.customer_id")}
    END
    """,
    f"""
    CREATE TRIGGER current_consents_delete AFTER DELETE ON consents
    BEGIN{SQLITE_RECOMPUTE.format(ids="OLD.customer_id")}
    END
    """,
]
TRIGGERS = ("current_consents_insert", "current_consents_update", "current_consents_delete")
FUNCTIONS = ("current_consents_add()", "current_consents_recompute(bigint[])", "current_consents_changed()",
             "current_consents_removed()")


def upgrade() -> None:
    op.create_table('current_consents',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.Enum('email', 'sms', name='channel', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('status', sa.Enum('granted', 'revoked', name='consent_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('consent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_current_consents_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'channel', name=op.f('pk_current_consents'))
    )
    # Consents already in the database (an upgrade of an existing installation).
    op.execute(f"INSERT INTO current_consents ({COLUMNS}) {LATEST.format(where='1 = 1')}")
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON consents" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        for function in FUNCTIONS:
            op.execute(f"DROP FUNCTION {function}")
    op.drop_table('current_consents')

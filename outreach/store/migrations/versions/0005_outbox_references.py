"""outbox references checked once per statement; provider id index

``messages.rule_id`` and ``messages.run_id`` lose their foreign keys, and the
database checks the same thing with triggers. A foreign key checks (and
locks) its parent once per inserted row: planning 262k messages spent 2.4 s
re-checking the same rule and the same run. Here:

* PostgreSQL: one statement-level check per INSERT over the new rows
  (transition table) that locks the referenced rules and runs FOR KEY SHARE,
  exactly as a foreign key would, and fails with foreign_key_violation if
  one is missing; a row-level check when an UPDATE changes either key.
* SQLite: row-level checks (SQLite has no statement-level triggers), which
  cost what its foreign keys cost.
* Both: deleting a rule or a run that messages still refer to is refused
  (RESTRICT, as before).

``messages.customer_id`` keeps its foreign key: erasing a customer must
cascade to their messages.

Also an index on ``messages.provider_id``: delivery-status webhooks find the
message by the provider's id. Partial (only rows that have one), so planning
does not index the NULL of every row it writes.

On SQLite dropping a foreign key rebuilds ``messages``; when SQLite enforces
foreign keys, dropping the old table would set ``tracking_events.message_id``
to NULL, so those links are saved first and restored after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MISSING = ("NOT EXISTS (SELECT 1 FROM rules WHERE rules.id = {row}.rule_id) OR ({row}.run_id IS NOT NULL AND "
           "NOT EXISTS (SELECT 1 FROM campaign_runs WHERE campaign_runs.id = {row}.run_id))")

POSTGRESQL = [
    """ALTER TABLE messages DROP CONSTRAINT fk_messages_rule_id_rules""",
    """ALTER TABLE messages DROP CONSTRAINT fk_messages_run_id_campaign_runs""",
    f"""
    CREATE FUNCTION messages_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        -- What a foreign key does, once per statement: lock the parents
        -- against deletion until commit, then look for a missing one.
        PERFORM 1 FROM rules WHERE id IN (SELECT rule_id FROM new_messages) FOR KEY SHARE;
        PERFORM 1 FROM campaign_runs WHERE id IN (SELECT run_id FROM new_messages) FOR KEY SHARE;
        SELECT n.rule_id, n.run_id INTO bad FROM new_messages n WHERE {MISSING.format(row="n")} LIMIT 1;
        IF FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'messages refer to rule %s / run %s, which does not exist', bad.rule_id, bad.run_id);
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION messages_check_changed_references() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM rules WHERE id = NEW.rule_id FOR KEY SHARE;
        PERFORM 1 FROM campaign_runs WHERE id = NEW.run_id FOR KEY SHARE;
        IF {MISSING.format(row="NEW")} THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'message %s would refer to rule %s / run %s, which does not exist', NEW.id, NEW.rule_id, NEW.run_id);
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION messages_keep_parent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- One plain predicate per parent, so each uses its index.
        IF (TG_TABLE_NAME = 'rules' AND EXISTS (SELECT 1 FROM messages WHERE rule_id = OLD.id))
           OR (TG_TABLE_NAME = 'campaign_runs' AND EXISTS (SELECT 1 FROM messages WHERE run_id = OLD.id))
        THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                '%s %s still has messages', TG_TABLE_NAME, OLD.id);
        END IF;
        RETURN OLD;
    END $$
    """,
    """CREATE TRIGGER messages_references_insert AFTER INSERT ON messages
       REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION messages_check_references()""",
    """CREATE TRIGGER messages_references_update BEFORE UPDATE OF rule_id, run_id ON messages FOR EACH ROW
       WHEN (OLD.rule_id IS DISTINCT FROM NEW.rule_id OR OLD.run_id IS DISTINCT FROM NEW.run_id)
       EXECUTE FUNCTION messages_check_changed_references()""",
    """CREATE TRIGGER rules_keep_messages BEFORE DELETE ON rules
       FOR EACH ROW EXECUTE FUNCTION messages_keep_parent()""",
    """CREATE TRIGGER campaign_runs_keep_messages BEFORE DELETE ON campaign_runs
       FOR EACH ROW EXECUTE FUNCTION messages_keep_parent()""",
]

SQLITE = [
    f"""
    CREATE TRIGGER messages_references_insert BEFORE INSERT ON messages
    WHEN {MISSING.format(row="NEW")}
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: messages.rule_id / messages.run_id'); END
    """,
    f"""
    CREATE TRIGGER messages_references_update BEFORE UPDATE OF rule_id, run_id ON messages
    WHEN {MISSING.format(row="NEW")}
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: messages.rule_id / messages.run_id'); END
    """,
    """
    CREATE TRIGGER rules_keep_messages BEFORE DELETE ON rules
    WHEN EXISTS (SELECT 1 FROM messages WHERE rule_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the rule still has messages'); END
    """,
    """
    CREATE TRIGGER campaign_runs_keep_messages BEFORE DELETE ON campaign_runs
    WHEN EXISTS (SELECT 1 FROM messages WHERE run_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the run still has messages'); END
    """,
]
TRIGGERS = {"messages_references_insert": "messages", "messages_references_update": "messages",
            "rules_keep_messages": "rules", "campaign_runs_keep_messages": "campaign_runs"}
FUNCTIONS = ("messages_check_references()", "messages_check_changed_references()", "messages_keep_parent()")
LINKS = "outreach_tracking_links"


def _rebuild_messages_keeping_tracking_links(change) -> None:  # type: ignore[no-untyped-def]
    """SQLite: rebuild ``messages`` with ``change(batch_op)`` applied, putting
    back the tracking events' links the rebuild's DROP TABLE nulls."""
    op.execute(f"CREATE TEMPORARY TABLE {LINKS} AS SELECT id, message_id FROM tracking_events "
               "WHERE message_id IS NOT NULL")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        change(batch_op)
    op.execute(f"UPDATE tracking_events SET message_id = (SELECT l.message_id FROM {LINKS} l "
               f"WHERE l.id = tracking_events.id) WHERE id IN (SELECT id FROM {LINKS})")
    op.execute(f"DROP TABLE {LINKS}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL:
            op.execute(statement)
        op.create_index('ix_messages_provider', 'messages', ['provider_id'], unique=False,
                        postgresql_where=sa.text('provider_id IS NOT NULL'))
        return

    def drop_keys(batch_op) -> None:  # type: ignore[no-untyped-def]
        batch_op.drop_constraint('fk_messages_rule_id_rules', type_='foreignkey')
        batch_op.drop_constraint('fk_messages_run_id_campaign_runs', type_='foreignkey')
        batch_op.create_index('ix_messages_provider', ['provider_id'], unique=False,
                              sqlite_where=sa.text('provider_id IS NOT NULL'))

    _rebuild_messages_keeping_tracking_links(drop_keys)
    for statement in SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger, table in TRIGGERS.items():
        op.execute(f"DROP TRIGGER {trigger} ON {table}" if postgresql else f"DROP TRIGGER {trigger}")
    if postgresql:
        for function in FUNCTIONS:
            op.execute(f"DROP FUNCTION {function}")
        op.drop_index('ix_messages_provider', table_name='messages')
        op.create_foreign_key(op.f('fk_messages_rule_id_rules'), 'messages', 'rules', ['rule_id'], ['id'])
        op.create_foreign_key(op.f('fk_messages_run_id_campaign_runs'), 'messages', 'campaign_runs',
                              ['run_id'], ['id'])
        return

    def restore_keys(batch_op) -> None:  # type: ignore[no-untyped-def]
        batch_op.drop_index('ix_messages_provider')
        batch_op.create_foreign_key(op.f('fk_messages_rule_id_rules'), 'rules', ['rule_id'], ['id'])
        batch_op.create_foreign_key(op.f('fk_messages_run_id_campaign_runs'), 'campaign_runs', ['run_id'], ['id'])

    _rebuild_messages_keeping_tracking_links(restore_keys)

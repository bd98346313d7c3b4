"""The outbox's rule and run references are enforced by the database (checked
once per statement instead of by per-row foreign keys, migration 0005): a
message can only refer to an existing rule and run, and a rule or run that
messages refer to cannot be deleted — on SQLite and PostgreSQL. Upgrading an
existing SQLite database keeps every tracking event linked to its message."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from factories import add_customer, old_database
from outreach.store.engine import migrate, transaction
from outreach.store.models import CampaignRun, Message, Rule, TrackingEvent
from outreach.store.outbox import start_run
from policy_factories import add_message, rule

NOW = datetime(2026, 6, 1, 12, 0)
HELLO = rule("name: hello\ntrigger: {type: inactivity, days: 30}\ntemplate: winback\nchannels: [email]\n")
INSERT_ONE = text(
    "INSERT INTO messages (rule_id, run_id, customer_id, channel, occurrence_key, status, planned_at, cost, "
    "attempts) VALUES (:rule, :run, :customer, 'email', :key, 'planned', :t, 0, 0)"
)


@pytest.fixture
def outbox(engine: Engine) -> dict[str, int]:
    """A customer, a rule, a run of it and one message of that run."""
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        message = add_message(s, HELLO, ada, channel="email", status="sent", planned_at=NOW)
        run = start_run(s, s.get(Rule, message.rule_id), as_of=NOW, started_at=NOW)
        message.run_id = run.id
        return {"customer": ada.id, "rule": message.rule_id, "run": run.id, "message": message.id}


def _rejected(engine: Engine, statement, params: dict) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseError, match=r"(?i)foreign key|does not exist|still has messages"):
        with transaction(engine) as s:
            s.execute(statement, params)


def test_a_message_must_refer_to_an_existing_rule_and_run(engine: Engine, outbox: dict[str, int]) -> None:
    base = {"customer": outbox["customer"], "t": NOW, "rule": outbox["rule"], "run": outbox["run"]}
    _rejected(engine, INSERT_ONE, base | {"rule": 999, "key": "no-rule"})
    _rejected(engine, INSERT_ONE, base | {"run": 999, "key": "no-run"})
    # Several rows in one statement, one of them bad: nothing is written
    many = text(
        "INSERT INTO messages (rule_id, run_id, customer_id, channel, occurrence_key, status, planned_at, cost, "
        "attempts) SELECT :rule, CASE WHEN n = 3 THEN 999 ELSE :run END, :customer, 'email', 'k' || n, "
        "'planned', :t, 0, 0 FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS numbers"
    )
    _rejected(engine, many, base)
    _rejected(engine, update(Message).where(Message.id == outbox["message"]).values(rule_id=999), {})
    with Session(engine) as s:
        assert s.scalars(select(Message.occurrence_key)).all() == [s.get(Message, outbox["message"]).occurrence_key]
    # A good one (no run, as older rows have) goes in
    with transaction(engine) as s:
        s.execute(INSERT_ONE, base | {"run": None, "key": "fine"})
        s.execute(update(Message).where(Message.occurrence_key == "fine").values(run_id=outbox["run"]))


def test_a_rule_or_run_with_messages_cannot_be_deleted(engine: Engine, outbox: dict[str, int]) -> None:
    _rejected(engine, delete(Rule).where(Rule.id == outbox["rule"]), {})
    _rejected(engine, delete(CampaignRun).where(CampaignRun.id == outbox["run"]), {})
    # Without messages they can
    with transaction(engine) as s:
        s.execute(delete(Message))
        s.execute(delete(CampaignRun))
        s.execute(delete(Rule))
        assert s.scalar(select(Rule.id)) is None


def test_planning_writes_messages_of_its_own_rule_and_run(engine: Engine) -> None:
    from factories import add_consent, add_order
    from outreach.planning.launch import plan_rule

    with transaction(engine) as s:
        for n in range(3):
            c = add_customer(s, f"c{n}")
            add_order(s, c, NOW - timedelta(days=40), 10)
            add_consent(s, c, "email", "granted", at=NOW - timedelta(days=50))
    result, _ = plan_rule(engine, HELLO, now=NOW)
    with Session(engine) as s:
        rows = s.execute(select(Message.rule_id, Message.run_id)).all()
        rule_id = s.scalar(select(Rule.id).where(Rule.name == "hello"))
    assert result.planned + result.held_out == 3
    assert set(rows) == {(rule_id, result.run_id)}


def test_upgrading_sqlite_keeps_tracking_events_linked(tmp_path: Path) -> None:
    # Given a database at revision 0004 with a message and its open event
    engine = old_database(tmp_path / "old.db", "0004", now=NOW)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rules (id, name, path, definition, checksum, updated_at) "
                          "VALUES (1, 'hello', 'x.yaml', '{}', 'c', :t)"), {"t": NOW})
        conn.execute(INSERT_ONE, {"rule": 1, "run": None, "customer": 1, "key": "k", "t": NOW})
        conn.execute(text("INSERT INTO tracking_events (type, message_id, customer_id, occurred_at, source, "
                          "simulated, payload) VALUES ('open', 1, 1, :t, 'pixel', 0, '{}')"), {"t": NOW})
    # When it is upgraded (foreign keys enforced, as every Outreach connection does)
    migrate(engine)
    # Then the event still points at its message, and the rule is protected
    with Session(engine) as s:
        assert s.scalars(select(TrackingEvent.message_id)).all() == [1]
        assert s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    _rejected(engine, delete(Rule), {})
    engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(engine: Engine, outbox: dict[str, int]) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from outreach.store.engine import alembic_config

    def parents() -> set[str]:
        return {fk["referred_table"] for fk in inspect(engine).get_foreign_keys("messages")}

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    assert parents() == {"customers"}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert parents() == {"customers", "rules", "campaign_runs"}
    migrate(engine)
    assert parents() == {"customers"}
    _rejected(engine, delete(Rule), {})
    with Session(engine) as s:
        assert s.scalar(select(Message.run_id)) == outbox["run"]

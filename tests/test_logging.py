"""Logging: one setup, structured records that say which rule, run and
message they are about — in-process and through the command line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach import logs
from outreach.config import load_settings
from outreach.planning.launch import launch
from outreach.store.models import Message
from policy_factories import make_settings
from test_sending import NOW, rule, shop


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Records of this test as JSON lines; the process's logging restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure(level="info", fmt="json", stream=stream)
    yield stream
    root.handlers, root.level = handlers, level
    logs.route_through_logging()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_planning_and_every_delivery_name_their_rule_run_and_message(
    engine: Engine, db_url: str, tmp_path: Path, json_log: io.StringIO
) -> None:
    # Given two customers with consent
    shop(engine, customers=[{"ext": f"c{i}", "email": f"c{i}@example.com", "consent": {"email": "granted"}}
                            for i in range(2)])
    # When the rule is launched (embedded: delivered before returning)
    [result] = launch(make_settings(tmp_path, db_url), engine, [rule()], now=NOW, simulated=True)
    # Then planning logged the run, and each delivery its message, rule and run
    logged = records(json_log)
    planned = [r for r in logged if r["event"] == "rule planned"]
    assert [(r["rule"], r["run_id"], r["planned"], r["level"]) for r in planned] == [
        ("winback-test", result.run_id, 2, "info")]
    sent = [r for r in logged if r["event"] == "message sent"]
    with Session(engine) as s:
        ids = set(s.scalars(select(Message.id)))
    assert {r["message_id"] for r in sent} == ids
    assert {(r["rule"], r["run_id"], r["channel"]) for r in sent} == {("winback-test", result.run_id, "email")}
    assert all(r["timestamp"].endswith("Z") for r in logged)


def test_the_level_hides_what_is_below_it(json_log: io.StringIO) -> None:
    logs.configure(level="warning", fmt="json", stream=json_log)
    log = logs.get_logger("outreach.test")
    log.info("not shown")
    logging.getLogger("dramatiq").warning("a library's warning")
    with logs.bound(rule="winback"):
        log.warning("shown", message_id=7)
    assert [(r["event"], r.get("rule"), r.get("message_id")) for r in records(json_log)] == [
        ("a library's warning", None, None), ("shown", "winback", 7)]


def test_secrets_never_appear_in_settings_shown_or_dumped() -> None:
    settings = load_settings(
        secret_key="sk-live-123", order_webhook_secret="shop-456", smtp_password="mail-789",
        twilio_auth_token="tw-000", database_url="postgresql+psycopg://app:db-pass@db.internal/outreach",
        broker_url="redis://:redis-pass@cache.internal:6379/0",
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("sk-live-123", "shop-456", "mail-789", "tw-000", "db-pass", "redis-pass"):
        assert secret not in shown
    assert "postgresql+psycopg://app:***@db.internal/outreach" in repr(settings)
    assert (settings.require_secret(), settings.require_order_secret(), settings.require("smtp_password")) == (
        "sk-live-123", "shop-456", "mail-789")


def test_without_configure_outreach_logs_as_a_library_through_standard_logging(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Outreach used from another program: nothing printed, records go to that program's logging
    logs.route_through_logging()
    with caplog.at_level(logging.INFO, logger="outreach.library"), logs.bound(rule="winback"):
        logs.get_logger("outreach.library").info("rule planned", run_id=3)
    assert capsys.readouterr().out == ""
    [record] = [r for r in caplog.records if r.name == "outreach.library"]
    assert (record.getMessage(), record.__dict__["rule"], record.__dict__["run_id"]) == ("rule planned", "winback", 3)

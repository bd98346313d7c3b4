"""Control groups at preview time: a marketer is told, before anything is
sent, when a rule's control group is too small to measure a lift, and when
a run's whole audience is held out so nothing is sent (preview and launch)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import count
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from factories import NOW, add_customer, bulk_customers, plan
from outreach.cli import main
from outreach.planning.control import ASSUMED_BASE_RATE, DETECTABLE_LIFT, MIN_CONTROL_GROUP, all_held_out
from outreach.stats import customers_needed
from outreach.store import holdout
from outreach.store.engine import transaction

REPO = Path(__file__).resolve().parents[1]
BIRTHDAY = date(1990, NOW.month, NOW.day)  # every customer here has their birthday on NOW
AT = NOW.isoformat() + "Z"


def rule_text(percent: float, name: str = "greeting") -> str:
    return (f"name: {name}\ntrigger: {{type: birthday}}\ntemplate: birthday\nchannels: [email]\n"
            f"holdout_percent: {percent}\n")


def customer_in(group: bool, rule: str = "greeting", percent: float = 10) -> str:
    """The first external id the rule's fixed draw puts in (``group``) or out of its control group."""
    return next(ext for ext in (f"h{n}" for n in count()) if holdout.is_held_out(rule, ext, percent) is group)


def invoke(tmp_path: Path, db_url: str, *args: str) -> Result:
    env = {"OUTREACH_DATABASE_URL": db_url, "OUTREACH_BROKER_URL": "memory://",
           "OUTREACH_OUTBOX_DIR": str(tmp_path / "outbox"), "OUTREACH_CONFIG": str(tmp_path / "none.toml"),
           "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"), "OUTREACH_RULES_DIR": str(tmp_path / "rules"),
           "OUTREACH_SECRET_KEY": "test-secret", "COLUMNS": "200"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write_rule(tmp_path: Path, text: str) -> str:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "greeting.yaml").write_text(text, encoding="utf-8")
    return str(tmp_path / "rules" / "greeting.yaml")


def test_a_one_customer_audience_held_out_is_said_at_preview_and_launch(
        tmp_path: Path, db_url: str, engine: Engine) -> None:
    # Given a 10 % holdout and one matching customer whom the rule's fixed draw holds out
    with transaction(engine) as s:
        add_customer(s, customer_in(True), birthday=BIRTHDAY)
    rule = write_rule(tmp_path, rule_text(10))
    # When the marketer previews the rule
    shown = invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT)
    # Then they read that nothing would be sent, why, and how to send to everyone
    assert shown.exit_code == 0, shown.output
    assert "1 customer matched; held out as the control group: nothing would be sent" in shown.stderr
    assert "holdout_percent: 0" in shown.stderr
    assert "too small to measure a lift" in shown.stderr
    # And launching says the same of what it did, and sends nothing
    launched = invoke(tmp_path, db_url, "campaign", "launch", rule, "--now", AT)
    assert launched.exit_code == 0, launched.output
    assert "held out 1, queued 0" in launched.stdout
    assert "1 customer matched; held out as the control group: nothing sent" in launched.stdout
    assert not list((tmp_path / "outbox").glob("**/*.eml"))


def test_an_audience_that_is_sent_to_gets_no_held_out_note(tmp_path: Path, db_url: str, engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, customer_in(False), birthday=BIRTHDAY)
    rule = write_rule(tmp_path, rule_text(10))
    launched = invoke(tmp_path, db_url, "campaign", "launch", rule, "--now", AT)
    assert launched.exit_code == 0, launched.output
    assert "held out 0, queued 1" in launched.stdout and "nothing sent" not in launched.stdout
    assert len(list((tmp_path / "outbox").glob("**/*.eml"))) == 1


def test_a_small_control_group_is_warned_with_the_customers_needed(
        tmp_path: Path, db_url: str, engine: Engine) -> None:
    # Given 40 birthdays today and a 10 % holdout: a handful held out
    with transaction(engine) as s:
        bulk_customers(s, 40, birthday=BIRTHDAY)
    held = sum(holdout.is_held_out("greeting", f"c{n:06d}", 10) for n in range(40))
    rule = write_rule(tmp_path, rule_text(10))
    shown = invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT)
    assert shown.exit_code == 0, shown.output
    needed = customers_needed(ASSUMED_BASE_RATE + DETECTABLE_LIFT, ASSUMED_BASE_RATE)
    assert needed is not None and needed > 1000  # hundreds per arm, at the least
    assert (f"control group of {held} customer(s) (0 held out so far + {held} from this run, at holdout_percent "
            f"10) — too small to measure a lift (need ≥ {MIN_CONTROL_GROUP}") in shown.stderr
    assert f"about {needed:,} customers per group" in shown.stderr
    assert "raise holdout_percent" in shown.stderr and "widen the audience" in shown.stderr
    assert "nothing would be sent" not in shown.stderr
    # The same, for scripts
    as_json = invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT, "--format", "json")
    found = json.loads(as_json.stdout)
    assert found["held_out"] == held and found["holdout_percent"] == 10
    [warning] = found["warnings"]
    assert warning["message"].startswith(f"control group of {held} customer(s)") and warning["hint"]


def test_earlier_runs_count_towards_the_control_group(tmp_path: Path, db_url: str, engine: Engine) -> None:
    # Given a rule that held out enough customers yesterday, and 10 birthdays today
    yesterday = NOW - timedelta(days=1)
    with transaction(engine) as s:
        bulk_customers(s, 400, birthday=date(1990, yesterday.month, yesterday.day))
        bulk_customers(s, 10, prefix="d", birthday=BIRTHDAY)
    text = rule_text(50)
    first, _ = plan(engine, text, yesterday)
    assert first.held_out >= MIN_CONTROL_GROUP
    # When today's run is previewed (a handful held out)
    rule = write_rule(tmp_path, text)
    shown = invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT)
    # Then yesterday's control group counts: no warning
    assert shown.exit_code == 0, shown.output
    assert "warning" not in shown.stderr
    found = json.loads(invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT, "--format", "json").stdout)
    assert found["control_so_far"] == first.held_out and 0 < found["held_out"] < MIN_CONTROL_GROUP
    assert found["warnings"] == []


@pytest.mark.parametrize("percent", [0, 50])
def test_no_warning_without_a_holdout_or_with_a_big_one(tmp_path: Path, db_url: str, engine: Engine,
                                                        percent: float) -> None:
    with transaction(engine) as s:
        bulk_customers(s, 300, birthday=BIRTHDAY)
    rule = write_rule(tmp_path, rule_text(percent))
    shown = invoke(tmp_path, db_url, "rules", "preview", rule, "--now", AT)
    assert shown.exit_code == 0, shown.output
    assert "warning" not in shown.stderr


def test_the_held_out_note() -> None:
    assert all_held_out(1, 0, future=False) == "1 customer matched; held out as the control group: nothing sent"
    assert all_held_out(3, 0, future=True) == ("3 customers matched; all held out as the control group: "
                                               "nothing would be sent")
    assert all_held_out(1, 4, future=False) == "" and all_held_out(0, 0, future=False) == ""

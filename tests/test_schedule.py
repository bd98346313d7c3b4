"""When rules run: ``schedule.due`` (for ``outreach run``) and the APScheduler
jobs of ``outreach scheduler`` — and that both read a cron expression the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from croniter import croniter
from rich.console import Console
from sqlalchemy import Engine

from factories import loaded_rule
from outreach.planning.launch import plan_rule
from outreach.planning.schedule import build_scheduler, due
from outreach.rules import LoadedRule
from policy_factories import make_settings, plan_run, rule
from trigger_helpers import rule_text

DAILY = rule("""
name: daily-nine
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
schedule: "0 9 * * *"
""")
UNSCHEDULED = rule("""
name: every-run
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
""")
DISABLED = rule("""
name: switched-off
enabled: false
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
schedule: "0 9 * * *"
""")
DISABLED_UNSCHEDULED = rule("""
name: switched-off-always
enabled: false
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
""")
ALL = [DAILY, UNSCHEDULED, DISABLED, DISABLED_UNSCHEDULED]


def names(rules: list[LoadedRule]) -> set[str]:
    return {r.spec.name for r in rules}


def test_never_run_rules_are_due_unless_disabled(engine: Engine) -> None:
    assert names(due(engine, ALL, now=datetime(2026, 6, 1, 8, 0))) == {"daily-nine", "every-run"}


def test_scheduled_rule_is_due_once_its_cron_time_passed_since_the_last_run(engine: Engine) -> None:
    # Given every rule ran at 08:00
    for loaded in ALL:
        plan_run(engine, loaded, datetime(2026, 6, 1, 8, 0))

    # Then at 08:59 only the unscheduled rule is due; at 09:01 the 09:00 rule too
    assert names(due(engine, ALL, now=datetime(2026, 6, 1, 8, 59))) == {"every-run"}
    assert names(due(engine, ALL, now=datetime(2026, 6, 1, 9, 1))) == {"every-run", "daily-nine"}

    # A run at exactly 09:00:00 is the 09:00 firing
    assert names(due(engine, [DAILY], now=datetime(2026, 6, 1, 9, 0))) == {"daily-nine"}

    # After it ran at 09:01 it is not due again until tomorrow's 09:00
    plan_run(engine, DAILY, datetime(2026, 6, 1, 9, 1))
    assert names(due(engine, [DAILY], now=datetime(2026, 6, 1, 23, 0))) == set()
    assert names(due(engine, [DAILY], now=datetime(2026, 6, 2, 9, 1))) == {"daily-nine"}
    assert names(due(engine, [DAILY], now=datetime(2026, 6, 2, 9, 0))) == {"daily-nine"}


def test_a_scheduled_rule_is_due_once_per_cron_time(engine: Engine) -> None:
    text = rule_text("daily", priority=1) + 'schedule: "0 9 * * *"\n'
    rule = loaded_rule(text)
    assert due(engine, [rule], now=datetime(2026, 6, 1, 8, 0)) == [rule]  # never run: due
    plan_rule(engine, rule, now=datetime(2026, 6, 1, 8, 0))
    assert due(engine, [rule], now=datetime(2026, 6, 1, 8, 59)) == []
    assert due(engine, [rule], now=datetime(2026, 6, 1, 9, 1)) == [rule]
    disabled = loaded_rule(text.replace("name: daily", "name: paused") + "enabled: false\n")
    assert due(engine, [disabled], now=datetime(2026, 6, 1, 9, 1)) == []


# ------------------------------------------------------------------ scheduler
def rule_file(folder: Path, name: str, *, schedule: str | None = None, enabled: bool = True) -> None:
    lines = [
        f"name: {name}",
        f"enabled: {'true' if enabled else 'false'}",
        "trigger: {type: inactivity, days: 30}",
        "template: winback",
        "channels: [email]",
    ]
    if schedule:
        lines.append(f'schedule: "{schedule}"')
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    rule_file(folder, "daily", schedule="0 9 * * *")
    rule_file(folder, "mondays", schedule="0 9 * * 1")
    rule_file(folder, "weekdays", schedule="30 8 * * 1-5")
    rule_file(folder, "paused", schedule="0 9 * * *", enabled=False)
    rule_file(folder, "always")
    (folder / "policy.yaml").write_text("frequency_cap: {max_messages: 2}\n", encoding="utf-8")
    return folder


def test_scheduler_has_one_job_per_scheduled_enabled_rule_plus_the_interval_job(
    sqlite_url: str, tmp_path: Path, rules_dir: Path
) -> None:
    settings = make_settings(tmp_path, sqlite_url, rules_dir=rules_dir)

    scheduler = build_scheduler(settings, engine=None, every_minutes=5, console=Console(quiet=True))

    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"rule:daily", "rule:mondays", "rule:weekdays", "unscheduled-and-deferred"}
    assert jobs["rule:daily"].args[2] == ["daily"]
    assert jobs["unscheduled-and-deferred"].args[2] is None  # every enabled unscheduled rule
    assert jobs["unscheduled-and-deferred"].trigger.interval == timedelta(minutes=5)
    assert not scheduler.running


@pytest.mark.parametrize("when", [datetime(2026, 6, 7, 10, 0, tzinfo=UTC),   # a Sunday
                                  datetime(2026, 6, 5, 8, 59, tzinfo=UTC)])  # a Friday
def test_scheduler_fires_when_cron_and_outreach_run_say(
    sqlite_url: str, tmp_path: Path, rules_dir: Path, when: datetime
) -> None:
    # Given the scheduler's jobs
    settings = make_settings(tmp_path, sqlite_url, rules_dir=rules_dir)
    scheduler = build_scheduler(settings, engine=None, every_minutes=5, console=Console(quiet=True))
    jobs = {job.id: job for job in scheduler.get_jobs()}

    # Then each fires next when standard cron (as `outreach run` reads it) says:
    # "1" in the day-of-week field is Monday
    for job_id, expression in (("rule:daily", "0 9 * * *"), ("rule:mondays", "0 9 * * 1"),
                               ("rule:weekdays", "30 8 * * 1-5")):
        expected = croniter(expression, when).get_next(datetime)
        fires = jobs[job_id].trigger.get_next_fire_time(None, when)
        assert fires == expected, (job_id, fires.strftime("%A %H:%M"), expected.strftime("%A %H:%M"))
    mondays = jobs["rule:mondays"].trigger.get_next_fire_time(None, when)
    assert mondays.strftime("%A %H:%M") == "Monday 09:00"

"""``rules preview`` and ``rules explain`` say what planning then does, and
change nothing — in the library and through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import NOW, add_consent, add_customer, add_order, add_suppression, loaded_rule
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.planning.explain import explain
from outreach.planning.launch import plan_rule
from outreach.planning.preview import preview
from outreach.store.engine import make_engine, migrate, transaction
from outreach.store.holdout import is_held_out
from outreach.store.models import Customer, Membership, Message
from policy_factories import (
    REPO,
    add_message,
    customer_id,
    plan_run,
    rule,
    ruleset,
    table_counts,
)
from trigger_helpers import MORNING, RULESET, lapsed_by_morning, messages, rule_text

DAY = timedelta(days=1)
BOTH = {"email": "granted", "sms": "granted"}
#: 22:00 in Shanghai (SMS deferred there), 14:00 in UTC, 10:00 in New York.
AFTERNOON = datetime(2026, 6, 1, 14, 0)

CARE = rule("""
name: care
trigger: {type: inactivity, days: 30}
template: winback
channels: [sms, email]
cooldown_days: 30
holdout_percent: 30
""")
OTHER = rule("""
name: other
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
""")
POLICY = ruleset({"frequency_cap": {"max_messages": 2, "days": 7, "per_channel": {"sms": 1}}})

#: The channel each customer's situation calls for (None: no message).
EXPECTED_CHANNEL = {
    "email-only": Channel.EMAIL,
    "sms-utc": Channel.SMS,
    "sms-new-york": Channel.SMS,
    "sms-shanghai": Channel.SMS,        # deferred by quiet hours
    "both-shanghai": Channel.SMS,       # deferred by quiet hours
    "sms-capped": Channel.EMAIL,        # one SMS this week already: falls back
    "all-capped": None,                 # two messages this week
    "no-consent": None,
    "revoked": None,
    "suppressed": None,
    "cooldown": None,                   # this rule wrote 10 days ago
    "already": None,                    # this occurrence was planned an hour ago
    "recent-buyer": None,               # not lapsed
    **{f"plain-{n:02d}": Channel.EMAIL for n in range(12)},
}
DEFERRED = {"sms-shanghai", "both-shanghai"}


def populate(engine: Engine) -> None:
    """Customers in every situation of EXPECTED_CHANNEL, as of AFTERNOON."""
    lapsed_at = AFTERNOON - 40 * DAY
    with transaction(engine) as s:
        add_order(s, add_customer(s, "already"), lapsed_at)
    plan_run(engine, CARE, AFTERNOON - timedelta(hours=1), POLICY)
    with transaction(engine) as s:
        def lapsed(ext: str, **kwargs: Any) -> Customer:
            customer = add_customer(s, ext, **kwargs)
            add_order(s, customer, lapsed_at)
            return customer

        lapsed("email-only")
        lapsed("sms-utc", consent={"sms": "granted"})
        lapsed("sms-new-york", tz="America/New_York", consent={"sms": "granted"})
        lapsed("sms-shanghai", tz="Asia/Shanghai", consent={"sms": "granted"})
        lapsed("both-shanghai", tz="Asia/Shanghai", consent=BOTH)
        capped = lapsed("sms-capped", consent=BOTH)
        add_message(s, OTHER, capped, channel="sms", status="sent", planned_at=AFTERNOON - 1 * DAY)
        full = lapsed("all-capped", consent=BOTH)
        add_message(s, OTHER, full, channel="sms", status="sent", planned_at=AFTERNOON - 1 * DAY)
        add_message(s, OTHER, full, channel="email", status="sent", planned_at=AFTERNOON - 2 * DAY)
        lapsed("no-consent", consent={})
        revoked = lapsed("revoked")
        add_consent(s, revoked, "email", "revoked", at=AFTERNOON - 5 * DAY)
        lapsed("suppressed")
        add_suppression(s, "email", "suppressed@example.com", at=AFTERNOON - 5 * DAY)
        cooled = lapsed("cooldown")
        add_message(s, CARE, cooled, channel="email", status="sent", planned_at=AFTERNOON - 10 * DAY)
        add_order(s, add_customer(s, "recent-buyer"), AFTERNOON - 5 * DAY)
        for n in range(12):
            lapsed(f"plain-{n:02d}")


def test_explain_agrees_with_what_planning_writes(engine: Engine) -> None:
    # Given customers in every situation: consent, cap, cooldown, quiet hours, holdout
    populate(engine)

    # When each is explained, and then the rule is planned
    explained = {ext: explain(engine, CARE, customer=ext, now=AFTERNOON, ruleset=POLICY)
                 for ext in EXPECTED_CHANNEL}
    _, rows = plan_run(engine, CARE, AFTERNOON, POLICY)

    # Then explain's decision is what was written, customer by customer
    held = {ext for ext in EXPECTED_CHANNEL if is_held_out("care", ext, 30)}
    assert held & {ext for ext, ch in EXPECTED_CHANNEL.items() if ch}, "population needs held-out recipients"
    for ext, expected in EXPECTED_CHANNEL.items():
        why = explained[ext]
        row = rows.get(ext)
        if expected is None:
            assert row is None and not why.would_send and why.channel is None, (ext, why.decision)
        elif ext in held:
            assert row is not None and row.status is MessageStatus.HELD_OUT, ext
            assert not why.would_send and why.channel == expected.value, (ext, why.decision)
            assert "held out" in why.decision
        else:
            assert row is not None and row.channel is expected, ext
            assert why.would_send and why.channel == expected.value, (ext, why.decision)
            deferred = ext in DEFERRED
            assert row.status is (MessageStatus.PLANNED if deferred else MessageStatus.QUEUED), ext
            assert (row.not_before is not None) == deferred, ext
            assert ("deferred by quiet hours" in why.decision) == deferred, (ext, why.decision)
    # The reasons a marketer reads
    assert "cooldown" in explained["cooldown"].decision
    assert "frequency cap" in explained["all-capped"].decision
    assert "no permitted channel" in explained["no-consent"].decision
    assert "already planned" in explained["already"].decision
    assert "not triggered" in explained["recent-buyer"].decision
    treated_email = next(ext for ext, ch in EXPECTED_CHANNEL.items() if ch is Channel.EMAIL and ext not in held)
    assert explained[treated_email].decision == (
        f"would receive it now on email ({treated_email}@example.com)"
    )
    assert DEFERRED - held, "population needs a deferred recipient"


def test_preview_counts_equal_what_planning_writes(engine: Engine) -> None:
    populate(engine)

    shown = preview(engine, CARE, now=AFTERNOON, ruleset=POLICY)
    _, rows = plan_run(engine, CARE, AFTERNOON, POLICY)

    sent = {ext: r for ext, r in rows.items() if r.status is not MessageStatus.HELD_OUT}
    by_channel: dict[str, int] = {}
    for r in sent.values():
        by_channel[r.channel.value] = by_channel.get(r.channel.value, 0) + 1
    assert shown.by_channel == by_channel
    assert shown.held_out == sum(r.status is MessageStatus.HELD_OUT for r in rows.values())
    assert shown.deferred == sum(r.status is MessageStatus.PLANNED for r in rows.values()) == len(
        DEFERRED - {ext for ext, r in rows.items() if r.status is MessageStatus.HELD_OUT}
    )
    assert (shown.no_consent, shown.cooldown, shown.capped) == (3, 2, 1)
    lapsed = [ext for ext in EXPECTED_CHANNEL if ext != "recent-buyer"]
    assert shown.matched == len(lapsed) == len(rows) + shown.no_consent + shown.cooldown + shown.capped
    assert shown.would_send == len(sent)
    assert [r["customer"] for r in shown.sample] == sorted(
        sent, key=lambda ext: customer_id(engine, ext)
    )[: len(shown.sample)]


def test_explain_and_preview_agree_with_what_planning_writes(engine: Engine) -> None:
    # Given customers in every situation a rule meets
    with transaction(engine) as s:
        lapsed_by_morning(s, "ok", consent={"email": "granted"})
        lapsed_by_morning(s, "no-consent", consent={})
        revoked = lapsed_by_morning(s, "revoked", consent={"email": "granted"})
        add_consent(s, revoked, Channel.EMAIL, ConsentStatus.REVOKED, at=MORNING - timedelta(days=1))
        lapsed_by_morning(s, "sms-fallback", email=None, tz="Asia/Shanghai", consent={"sms": "granted"})
        lapsed_by_morning(s, "deferred", email=None, tz="America/New_York", consent={"sms": "granted"})
        add_customer(s, "recent-buyer", consent={"email": "granted"})
        for n in range(30):
            lapsed_by_morning(s, f"bulk{n:02d}", consent={"email": "granted"})
    rule = loaded_rule(rule_text("r", priority=1, channels="[email, sms]", holdout=20))
    # When explain and preview look first (changing nothing) …
    ext_ids = ["ok", "no-consent", "revoked", "sms-fallback", "deferred", "recent-buyer",
               *[f"bulk{n:02d}" for n in range(30)]]
    said = {ext: explain(engine, rule, customer=ext, now=MORNING, ruleset=RULESET) for ext in ext_ids}
    before = preview(engine, rule, now=MORNING, ruleset=RULESET)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0
        assert s.scalar(select(func.count()).select_from(Membership)) == 0
    # … and then the rule is planned
    plan_rule(engine, rule, now=MORNING, ruleset=RULESET)
    written = {c: (ch, st) for _, c, ch, st in messages(engine)}
    # Then every explanation matches the row planning wrote (or its absence)
    for ext, e in said.items():
        if ext not in written:
            assert not e.would_send and "held out" not in e.decision, (ext, e.decision)
        elif written[ext][1] == "held_out":
            assert "held out" in e.decision, (ext, e.decision)
        else:
            assert e.would_send and e.channel == written[ext][0], (ext, e.decision, written[ext])
            assert ("deferred" in e.decision) == (written[ext][1] == "planned"), (ext, e.decision)
    assert "no permitted channel" in said["no-consent"].decision
    assert "not triggered" in said["recent-buyer"].decision
    # And the preview's numbers are the rows planning wrote
    statuses = [st for _, st in written.values()]
    assert before.held_out == statuses.count("held_out")
    assert before.would_send == len(statuses) - before.held_out
    assert before.deferred == statuses.count("planned")
    assert before.no_consent == 2 and before.matched == 35


def test_preview_and_explain_change_nothing(engine: Engine) -> None:
    # Given a lifecycle rule with a stats segment, evaluated once (baseline), and a
    # customer who has since entered the stage
    entering = rule("""
name: at-risk-vips
trigger: {type: lifecycle, stage: at_risk, max_age_days: 7}
segment: {stats: {order_count: {gte: 2}}}
template: winback
channels: [email]
""")
    rs = ruleset({"lifecycle": {"active_orders": 10}})
    with transaction(engine) as s:
        for ext, last in (("baseline", 100), ("drifting", 85)):
            c = add_customer(s, ext)
            add_order(s, c, NOW - 400 * DAY)
            add_order(s, c, NOW - last * DAY)
    plan_run(engine, entering, NOW, rs)
    later = NOW + 5 * DAY
    before = table_counts(engine)

    # When the marketer previews and explains, several times
    for _ in range(2):
        shown = preview(engine, entering, now=later, ruleset=rs)
        why = explain(engine, entering, customer="drifting", now=later, ruleset=rs)
        not_entered = explain(engine, entering, customer="baseline", now=later, ruleset=rs)

    # Then they say drifting would get it, and the database is exactly as before
    assert (shown.matched, shown.by_channel) == (1, {"email": 1})
    assert why.would_send and why.channel == "email"
    assert not not_entered.would_send and "not triggered" in not_entered.decision
    assert table_counts(engine) == before
    # And the entry was not used up: planning messages drifting
    _, rows = plan_run(engine, entering, later, rs)
    assert set(rows) == {"drifting"}


def test_preview_changes_nothing_on_a_fresh_database(engine: Engine) -> None:
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), NOW - 40 * DAY)
    stats_rule = rule("""
name: champions
trigger: {type: inactivity, days: 30}
segment: {stats: {rfm_segment: [champions, new, promising, hibernating, needs_attention]}}
template: winback
channels: [email]
""")
    before = table_counts(engine)
    assert preview(engine, stats_rule, now=NOW, ruleset=ruleset()).matched == 1
    assert explain(engine, stats_rule, customer="ada", now=NOW, ruleset=ruleset()).would_send
    assert table_counts(engine) == before == {
        "messages": 0, "memberships": 0, "customer_stats": 0, "campaign_runs": 0, "rules": 0
    }


# ------------------------------------------------------------------ CLI
CLI_RULE = """\
name: winback-cli
trigger: {type: inactivity, days: 30}
template: winback
channels: [email, sms]
"""


def cli(workdir: Path, db_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["OUTREACH_CONFIG"] = str(workdir / "outreach.toml")  # none: defaults only
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "outreach"), "--database-url", f"sqlite:///{db_path}", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )


def cli_shop(tmp_path: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "shop"
    (workdir / "rules").mkdir(parents=True)
    (workdir / "rules" / "winback-cli.yaml").write_text(CLI_RULE, encoding="utf-8")
    (workdir / "templates").symlink_to(REPO / "templates")
    db_path = workdir / "outreach.db"
    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    with transaction(engine) as s:
        for ext in ("ada", "bo", "cy"):
            add_order(s, add_customer(s, ext), NOW - 40 * DAY)
        add_order(s, add_customer(s, "sms-only", consent={"sms": "granted"}), NOW - 40 * DAY)
        add_order(s, add_customer(s, "silent", consent={}), NOW - 40 * DAY)
        add_order(s, add_customer(s, "recent"), NOW - 2 * DAY)
    engine.dispose()
    return workdir, db_path


def table_value(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", output)
    assert match, f"{label!r} not in:\n{output}"
    return int(match.group(1))


def test_cli_preview_and_explain(tmp_path: Path) -> None:
    workdir, db_path = cli_shop(tmp_path)
    now = "2026-06-01T09:00:00Z"  # 09:00 UTC: inside the SMS window

    shown = cli(workdir, db_path, "rules", "preview", "rules/winback-cli.yaml", "--now", now)
    assert shown.returncode == 0, shown.stderr
    assert table_value(shown.stdout, "matched trigger and segment") == 5
    assert table_value(shown.stdout, "would receive on email") == 3
    assert table_value(shown.stdout, "would receive on sms") == 1
    assert table_value(shown.stdout, "no consent / no address / suppressed") == 1
    assert "nothing was changed" in shown.stdout

    why = cli(workdir, db_path, "rules", "explain", "rules/winback-cli.yaml", "--customer", "ada", "--now", now)
    assert why.returncode == 0, why.stderr
    assert "decision: would receive it now on email (ada@example.com)" in why.stdout
    silent = cli(workdir, db_path, "rules", "explain", "rules/winback-cli.yaml", "--customer", "silent",
                 "--now", now)
    assert silent.returncode == 0, silent.stderr
    assert "decision: no permitted channel" in silent.stdout

    # Nothing was planned by either command
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        assert table_counts(engine)["messages"] == 0
    finally:
        engine.dispose()


def test_cli_explain_unknown_customer_is_a_located_error(tmp_path: Path) -> None:
    workdir, db_path = cli_shop(tmp_path)

    result = cli(workdir, db_path, "rules", "explain", "rules/winback-cli.yaml", "--customer", "nobody",
                 "--now", "2026-06-01T09:00:00Z")

    assert result.returncode == 1
    assert "no customer with external id 'nobody'" in result.stderr
    assert "--customer" in result.stderr and "hint" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

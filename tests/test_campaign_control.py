"""Campaign control: status, pause, resume, cancel, retry; disabled rules;
a campaign that pauses itself; transactional sends; provider rate limits.
On SQLite and PostgreSQL, through the command line where the command is the point."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach.domain import Channel, MessageStatus
from outreach.planning.launch import launch, plan_rule
from outreach.sending import janitor, limits, queue
from outreach.sending.deliver import Sender
from outreach.store import campaigns
from outreach.store.engine import make_engine, transaction
from outreach.store.models import Message, Rule, Suppression
from policy_factories import make_settings, ruleset
from smtp_server import smtp_server
from test_sending import NOW, REPO, ids_of, rule, shop, statuses

OUTREACH = Path(sys.executable).parent / "outreach"
RULE_NAME = "winback-test"


def customers(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"ext": f"c{i}", "email": f"c{i}@example.com", "consent": {"email": "granted"}, **extra}
            for i in range(count)]


def cli(tmp_path: Path, db_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update({
        "OUTREACH_DATABASE_URL": db_url, "OUTREACH_BROKER_URL": "memory://",
        "OUTREACH_OUTBOX_DIR": str(tmp_path / "outbox"), "OUTREACH_CONFIG": str(tmp_path / "none.toml"),
        "OUTREACH_TEMPLATES_DIR": settings.pop("templates", str(REPO / "templates")),
        "OUTREACH_RULES_DIR": str(tmp_path / "rules"), "OUTREACH_SECRET_KEY": "test-secret", **settings,
    })
    return subprocess.run([str(OUTREACH), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)


def status_json(tmp_path: Path, db_url: str) -> dict[str, Any]:
    done = cli(tmp_path, db_url, "campaign", "status", RULE_NAME, "--format", "json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    return row


def eml_count(tmp_path: Path) -> int:
    return len(list((tmp_path / "outbox" / "email").glob("*.eml")))


# ---------------------------------------------------------------- status
def test_status_shows_each_state_the_rate_and_the_eta(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given three planned emails: one sent, one refused for good, one still queued
    with smtp_server(refuse={"c1@example.com": "550 5.1.1 mailbox unavailable"}) as server:
        settings = make_settings(tmp_path, db_url, email_transport="smtp", smtp_host=server.host,
                                 smtp_port=server.port)
        shop(engine, customers=customers(3))
        _, queued = plan_rule(engine, rule(), now=NOW)
        Sender(settings, engine, worker_id="w1").deliver(ids_of(queued)[:2])
    # When the marketer asks where the campaign is
    row = status_json(tmp_path, db_url)
    # Then each state has its count, with the last minute's rate
    assert row["rule"] == RULE_NAME and row["state"] == "active"
    assert row["counts"] == {"sent": 1, "failed": 1, "queued": 1}
    assert row["outstanding"] == 1
    assert row["rate_per_second"] == pytest.approx(1 / 60)
    assert row["eta_seconds"] == pytest.approx(60)
    table = cli(tmp_path, db_url, "campaign", "status")
    assert table.returncode == 0, table.stderr
    assert RULE_NAME in table.stdout and "active" in table.stdout and "1 min 00 s" in table.stdout


def test_control_commands_name_the_known_rules_when_one_is_unknown(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    shop(engine, customers=customers(1))
    plan_rule(engine, rule(), now=NOW)
    for command in (["status", "winbak"], ["pause", "winbak"], ["resume", "winbak"], ["retry", "winbak"],
                    ["cancel", "winbak", "--yes"]):
        done = cli(tmp_path, db_url, "campaign", *command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)  # bad input
        assert "field 'RULE': no campaign of a rule named 'winbak'" in done.stderr
        assert f"rules that have run: {RULE_NAME}" in done.stderr


# ---------------------------------------------------------------- pause, resume, cancel, retry
def test_a_paused_rule_sends_nothing_plans_nothing_until_resumed(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a campaign with three queued emails, paused
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=customers(3))
    _, queued = plan_rule(engine, rule(), now=NOW)
    with transaction(engine) as s:
        assert campaigns.pause_rule(s, campaigns.rule_named(s, RULE_NAME).id, reason="wrong coupon", now=NOW)
    # Then a worker handed its messages claims none, a janitor does not hand them over
    # again, and launching it again plans nothing
    assert Sender(settings, engine, worker_id="w1").deliver(ids_of(queued)).claimed == 0
    ctx = queue.setup(settings, engine)
    assert janitor.maintain(ctx).lost == 0
    [again] = launch(settings, engine, [rule()], now=NOW + timedelta(days=1), simulated=True, ctx=ctx)
    assert again.planned == 0 and again.note.startswith("paused: nothing planned (wrong coupon)")
    assert status_json(tmp_path, db_url)["state"] == "paused"
    assert eml_count(tmp_path) == 0
    # When it is resumed from the command line, every message goes, once
    done = cli(tmp_path, db_url, "campaign", "resume", RULE_NAME)
    assert done.returncode == 0 and "3 queued message(s)" in done.stdout, done.stderr
    assert set(statuses(engine).values()) == {MessageStatus.SENT}
    assert eml_count(tmp_path) == 3


def test_cancel_ends_what_is_not_sent_and_keeps_what_is(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=customers(3))
    _, queued = plan_rule(engine, rule(), now=NOW)
    Sender(settings, engine, worker_id="w1").deliver(ids_of(queued)[:1])
    done = cli(tmp_path, db_url, "campaign", "cancel", RULE_NAME, "--yes", "--reason", "stock ran out")
    assert done.returncode == 0 and "2 message(s) cancelled" in done.stdout, done.stderr
    # A worker handed the cancelled ones later sends nothing
    assert Sender(settings, engine, worker_id="w1").deliver(ids_of(queued)).claimed == 0
    assert status_json(tmp_path, db_url)["counts"] == {"sent": 1, "cancelled": 2}
    with Session(engine) as s:
        errors = set(s.scalars(select(Message.last_error).where(Message.status == MessageStatus.SKIPPED)))
    assert errors == {"cancelled: stock ran out"}


def test_retry_sends_failed_messages_after_the_template_is_fixed(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given a template with a mistake: every message of the campaign fails
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    good = (templates / "winback" / "email.txt").read_text()
    (templates / "winback" / "email.txt").write_text("{{ customer.name | no_such_filter }}\n")
    settings = make_settings(tmp_path, db_url, templates_dir=templates)
    shop(engine, customers=customers(2))
    launch(settings, engine, [rule()], now=NOW, simulated=True)
    assert status_json(tmp_path, db_url)["counts"] == {"failed": 2}
    with Session(engine) as s:
        assert all("no_such_filter" in e for e in s.scalars(select(Message.last_error)))
    # When the template is fixed and the failed messages retried
    (templates / "winback" / "email.txt").write_text(good)
    done = cli(tmp_path, db_url, "campaign", "retry", RULE_NAME, templates=str(templates))
    assert done.returncode == 0 and "2 failed message(s) queued again" in done.stdout, done.stderr
    # Then they are sent, once, with a fresh count of attempts
    with Session(engine) as s:
        assert {(m.status, m.attempts) for m in s.scalars(select(Message))} == {(MessageStatus.SENT, 1)}
    assert eml_count(tmp_path) == 2


def test_a_campaign_that_mostly_fails_pauses_itself_and_keeps_the_rest(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given a relay that refuses every recipient, and a campaign of twelve emails
    everyone = customers(12)
    refuse = {c["email"]: "550 5.7.1 relaying denied" for c in everyone}
    with smtp_server(refuse=refuse) as server:
        settings = make_settings(tmp_path, db_url, email_transport="smtp", smtp_host=server.host,
                                 smtp_port=server.port, auto_pause_after=5, auto_pause_error_rate=0.6)
        shop(engine, customers=everyone)
        _, queued = plan_rule(engine, rule(), now=NOW)
        tally = Sender(settings, engine, worker_id="w1").deliver(ids_of(queued))
    # Then after five failures in a row the campaign paused itself, the rest still queued
    assert (tally.failed, tally.released, tally.sent) == (5, 7, 0)
    row = status_json(tmp_path, db_url)
    assert row["state"] == "paused" and row["counts"] == {"failed": 5, "queued": 7}
    assert row["pause_reason"].startswith("paused by itself: 5 of the last 5 messages failed")
    assert "550 5.7.1 relaying denied" in row["pause_reason"]
    # And once the relay is fixed, resume and retry send all twelve
    assert cli(tmp_path, db_url, "campaign", "resume", RULE_NAME).returncode == 0
    assert cli(tmp_path, db_url, "campaign", "retry", RULE_NAME).returncode == 0
    assert status_json(tmp_path, db_url)["counts"] == {"sent": 12}


# ---------------------------------------------------------------- enabled: false
def write_rule(tmp_path: Path, *, enabled: bool) -> None:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "policy.yaml").write_text('send_windows:\n  email: {start: "08:00", end: "22:00"}\n')
    text = f"name: {RULE_NAME}\ntrigger: {{type: inactivity, days: 30}}\ntemplate: winback\nchannels: [email]\n"
    (tmp_path / "rules" / f"{RULE_NAME}.yaml").write_text(text + ("" if enabled else "enabled: false\n"))


def test_a_disabled_rule_plans_nothing_and_its_deferred_messages_wait(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    shop(engine, customers=customers(3))
    # Given a disabled rule: launching it plans nothing
    write_rule(tmp_path, enabled=False)
    done = cli(tmp_path, db_url, "campaign", "launch", f"rules/{RULE_NAME}.yaml", "--now", "2026-06-01T03:00:00Z")
    assert done.returncode == 0 and "disabled" in done.stdout, done.stderr
    assert statuses(engine) == {}
    # Given it enabled, run at night: the emails wait for the 08:00 send window
    write_rule(tmp_path, enabled=True)
    assert cli(tmp_path, db_url, "run", "--now", "2026-06-01T03:00:00Z").returncode == 0
    assert status_json(tmp_path, db_url)["counts"] == {"deferred": 3}
    # When it is disabled before the window opens, nothing goes at 09:00
    write_rule(tmp_path, enabled=False)
    assert cli(tmp_path, db_url, "run", "--now", "2026-06-01T09:00:00Z").returncode == 0
    row = status_json(tmp_path, db_url)
    assert row["state"] == "disabled" and row["counts"] == {"deferred": 3}
    assert eml_count(tmp_path) == 0
    # And enabled again, they go, once
    write_rule(tmp_path, enabled=True)
    assert cli(tmp_path, db_url, "run", "--now", "2026-06-01T09:30:00Z").returncode == 0
    assert status_json(tmp_path, db_url)["counts"] == {"sent": 3}
    assert eml_count(tmp_path) == 3


# ---------------------------------------------------------------- progress
def in_a_terminal(tmp_path: Path, db_url: str, *args: str) -> tuple[int, str]:
    """Run a command with its output on a pseudo-terminal, as a marketer
    at a shell sees it: (exit code, what the terminal received)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update({"OUTREACH_DATABASE_URL": db_url, "OUTREACH_BROKER_URL": "memory://",
                "OUTREACH_OUTBOX_DIR": str(tmp_path / "outbox"), "OUTREACH_CONFIG": str(tmp_path / "none.toml"),
                "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"), "OUTREACH_SECRET_KEY": "test-secret",
                "TERM": "xterm-256color", "COLUMNS": "120"})
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(OUTREACH), *args], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal)
    os.close(terminal)
    received = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other end closed: the command is done
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", received.decode("utf-8", "replace"))  # colours, cursor moves
    return process.wait(timeout=240), text


def test_an_embedded_launch_shows_its_progress_on_a_terminal_only(sqlite_url: str, tmp_path: Path) -> None:
    # Given a campaign of 4,000 emails (seconds of work), delivered embedded (in the command itself)
    db_url, engine = sqlite_url, make_engine(sqlite_url)
    shop(engine, customers=customers(4000))
    engine.dispose()
    write_rule(tmp_path, enabled=True)
    launch_args = ("campaign", "launch", f"rules/{RULE_NAME}.yaml", "--now", "2026-06-01T09:00:00Z")
    # When it is launched at a terminal
    code, screen = in_a_terminal(tmp_path, db_url, *launch_args)
    # Then the terminal showed a progress bar counting towards the 4,000 while they went out
    assert code == 0, screen
    counts = [tuple(map(int, m)) for m in re.findall(r"delivering\W*(\d+)/(\d+) messages", screen)]
    assert counts and all(total == 4000 for _, total in counts), screen[-2000:]
    assert counts[-1] == (4000, 4000) and min(done for done, _ in counts) < 4000  # seen on its way, then done
    assert "planned 4000" in screen and eml_count(tmp_path) == 4000
    # And the same command in a pipe (a log, cron) prints no bar, just the result
    shutil.rmtree(tmp_path / "outbox")
    piped = cli(tmp_path, db_url, "campaign", "launch", f"rules/{RULE_NAME}.yaml", "--now", "2026-06-01T09:00:00Z")
    assert piped.returncode == 0 and "delivering" not in piped.stdout + piped.stderr


# ---------------------------------------------------------------- transactional
SECOND_CAMPAIGN = """
name: upsell-test
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
"""
ORDER_CONFIRMATION = """
name: order-confirmation
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
transactional: true
"""


def test_transactional_sends_skip_the_marketing_cap_never_suppression_and_jump_the_queue(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given a cap of one marketing message a week, reached by a marketing campaign
    settings = make_settings(tmp_path, db_url)
    capped = ruleset({"frequency_cap": {"max_messages": 1, "days": 7}})
    ids = shop(engine, customers=customers(2))
    launch(settings, engine, [rule()], now=NOW, simulated=True, ruleset=capped)
    assert [r.planned for r in launch(settings, engine, [rule(SECOND_CAMPAIGN)], now=NOW, simulated=True,
                                      ruleset=capped)] == [0]
    # And one of the customers' address suppressed (a hard bounce)
    with transaction(engine) as s:
        s.add(Suppression(channel=Channel.EMAIL, address="c1@example.com", reason="bounce", created_at=NOW))
    # When a transactional rule plans, its batches go to their own queue
    ctx = queue.setup(settings, engine)
    result, planned = plan_rule(engine, rule(ORDER_CONFIRMATION), now=NOW, ruleset=capped)
    queue.enqueue(ctx, planned, as_of=NOW)
    assert {name: q.qsize() for name, q in ctx.broker.queues.items() if q.qsize()} == {
        queue.TRANSACTIONAL_QUEUE: 1}
    queue.drain(ctx)
    # Then the customer who reached the marketing cap gets it; the suppressed address does not
    assert result.planned == 1
    with Session(engine) as s:
        rule_id = s.scalar(select(Rule.id).where(Rule.name == "order-confirmation"))
        got = {m.customer_id: m.status for m in s.scalars(select(Message).where(Message.rule_id == rule_id))}
    assert got == {ids["c0"]: MessageStatus.SENT}



# ---------------------------------------------------------------- rate limits
def test_a_rate_limit_holds_across_every_sender(
    engine: Engine, db_url: str, tmp_path: Path, broker: dict[str, str]
) -> None:
    # Given a relay that takes at most 5 messages a second, shared by two senders
    with smtp_server() as server:
        settings = make_settings(tmp_path, db_url, email_transport="smtp", smtp_host=server.host,
                                 smtp_port=server.port, rate_limits={"smtp": "5/s"}, **broker)
        limits._limiters.clear()
        shop(engine, customers=customers(20))
        _, queued = plan_rule(engine, rule(), now=NOW)
        ctx = queue.setup(settings, engine)
        senders = [Sender(settings, engine, worker_id=f"w{n}", broker=ctx.broker) for n in (1, 2)]
        ids = ids_of(queued)
        jobs: list[Callable[[], Any]] = [lambda: senders[0].deliver(ids[::2]), lambda: senders[1].deliver(ids[1::2])]
        threads = [threading.Thread(target=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        arrivals = sorted(r.at for r in server.received)
    # Then all 20 arrived, spread over at least four one-second windows: no
    # more than 5 in any of them (without the limit they take a few milliseconds)
    assert len(arrivals) == 20
    assert arrivals[-1] - arrivals[0] >= 2.0
    assert senders[0].chunk == 5  # a second's worth claimed at a time
    if "broker_namespace" in broker:
        import redis

        keys = list(redis.Redis.from_url(broker["broker_url"]).scan_iter(f"{broker['broker_namespace']}:rate:smtp*"))
        assert keys, "the window is not kept in Redis, where every worker sees it"

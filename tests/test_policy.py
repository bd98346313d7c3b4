"""Policy across rules: frequency cap and rule priority, quiet hours (send windows), holdout —
through real planning and in-process sending on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import NOW, add_customer, add_order, loaded_rule
from outreach.domain import Channel, MessageStatus
from outreach.planning.launch import launch
from outreach.store.engine import transaction
from outreach.store.holdout import is_held_out
from outreach.store.models import Customer, Message
from policy_factories import (
    add_message,
    make_settings,
    outbox_recipients,
    plan_run,
    rows_by_customer,
    rule,
    ruleset,
)
from trigger_helpers import MORNING, RULESET, lapsed_by_morning, messages, rule_text

DAY = timedelta(days=1)
BOTH = {"email": "granted", "sms": "granted"}

PROMO = rule("""
name: promo
trigger: {type: inactivity, days: 30}
template: winback
channels: [email, sms]
cooldown_days: 0
""")
#: Another rule whose earlier messages fill the customers' caps.
OTHER = rule("""
name: other
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
""")


def lapsed(s: Session, ext: str, **kwargs: Any) -> Customer:
    """A customer whose last order was 40 days before NOW."""
    customer = add_customer(s, ext, **kwargs)
    add_order(s, customer, NOW - 40 * DAY)
    return customer


# ------------------------------------------------------------------ frequency cap
def test_cap_counts_messages_across_channels_and_per_channel(engine: Engine) -> None:
    # Given at most 2 messages per 7 days, at most 1 of them SMS
    rs = ruleset({"frequency_cap": {"max_messages": 2, "days": 7, "per_channel": {"sms": 1}}})
    with transaction(engine) as s:
        lapsed(s, "fresh", consent=BOTH)
        one = lapsed(s, "one-email", consent=BOTH)
        add_message(s, OTHER, one, channel="email", status="sent", planned_at=NOW - 2 * DAY)
        mixed = lapsed(s, "email-and-sms", consent=BOTH)
        add_message(s, OTHER, mixed, channel="email", status="sent", planned_at=NOW - 3 * DAY)
        add_message(s, OTHER, mixed, channel="sms", status="sent", planned_at=NOW - 2 * DAY)
        old = lapsed(s, "two-last-month", consent=BOTH)
        for days in (8, 9):
            add_message(s, OTHER, old, channel="email", status="sent", planned_at=NOW - days * DAY)
        sms_only = lapsed(s, "sms-only-capped", consent={"sms": "granted"})
        add_message(s, OTHER, sms_only, channel="sms", status="sent", planned_at=NOW - 1 * DAY)
        lapsed(s, "sms-only-free", consent={"sms": "granted"})

    # When the promo is planned
    _, rows = plan_run(engine, PROMO, NOW, rs)

    # Then customers under both caps get it on their first permitted channel;
    # two messages in 7 days (any channels) or one SMS (SMS-only) stop it
    assert {ext: r.channel for ext, r in rows.items()} == {
        "fresh": Channel.EMAIL,
        "one-email": Channel.EMAIL,
        "two-last-month": Channel.EMAIL,
        "sms-only-free": Channel.SMS,
    }
    assert {r.status for r in rows.values()} == {MessageStatus.QUEUED}


def test_capped_email_falls_back_to_sms_under_its_own_cap(engine: Engine) -> None:
    # Given at most one email and two SMS per week, and a customer emailed yesterday
    rs = ruleset({"frequency_cap": {"days": 7, "per_channel": {"email": 1, "sms": 2}}})
    with transaction(engine) as s:
        both = lapsed(s, "both", consent=BOTH)
        add_message(s, OTHER, both, channel="email", status="sent", planned_at=NOW - 1 * DAY)
        email_only = lapsed(s, "email-only", consent={"email": "granted"})
        add_message(s, OTHER, email_only, channel="email", status="sent", planned_at=NOW - 1 * DAY)

    _, rows = plan_run(engine, PROMO, NOW, rs)

    # Then the promo goes by SMS to the customer who has SMS consent, to nobody else
    assert set(rows) == {"both"}
    assert rows["both"].channel is Channel.SMS
    assert rows["both"].to_address and rows["both"].to_address.startswith("+86")


def test_held_out_skipped_and_failed_messages_do_not_count(engine: Engine) -> None:
    rs = ruleset({"frequency_cap": {"max_messages": 1, "days": 7}})
    with transaction(engine) as s:
        for status in ("held_out", "skipped", "failed"):
            c = lapsed(s, f"had-{status}")
            add_message(s, OTHER, c, channel="email", status=status, planned_at=NOW - 1 * DAY)
        for status in ("sent", "queued", "planned"):
            c = lapsed(s, f"had-{status}")
            add_message(s, OTHER, c, channel="email", status=status, planned_at=NOW - 1 * DAY)

    _, rows = plan_run(engine, PROMO, NOW, rs)

    assert set(rows) == {"had-held_out", "had-skipped", "had-failed"}


def test_two_rules_in_one_launch_higher_priority_wins_the_cap(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given one message per customer per week, and two rules that both select ada;
    # the important one is listed last and sorts last by name
    rs = ruleset({"frequency_cap": {"max_messages": 1, "days": 7}})
    minor = rule("""
name: a-minor
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
priority: 1
""")
    major = rule("""
name: z-major
trigger: {type: inactivity, days: 30}
segment: {tag: vip}
template: winback
channels: [email]
priority: 50
""")
    with transaction(engine) as s:
        lapsed(s, "ada", tags=["vip"])
        lapsed(s, "bo")

    # When both are launched together
    results = launch(make_settings(tmp_path, db_url), engine, [minor, major], now=NOW, simulated=True,
                     ruleset=rs)

    # Then ada hears only from the higher-priority rule; the other is capped (no row for her)
    assert [r.rule for r in results] == ["z-major", "a-minor"]
    messages = rows_by_customer(engine)
    assert [(m.rule, m.status) for m in messages["ada"]] == [("z-major", MessageStatus.SENT)]
    assert [(m.rule, m.status) for m in messages["bo"]] == [("a-minor", MessageStatus.SENT)]
    emails, _sms = outbox_recipients(tmp_path)
    assert sorted(emails) == ["ada@example.com", "bo@example.com"]


# ------------------------------------------------------------------ quiet hours
SMS_RULE = rule("""
name: sms-promo
trigger: {type: inactivity, days: 30}
template: winback
channels: [sms]
cooldown_days: 0
""")


@pytest.mark.parametrize(
    ("tz", "now", "opening", "daytime_tz"),
    [
        # 23:00 in Shanghai (UTC+8, no DST) → 09:00 next day = 01:00 UTC
        ("Asia/Shanghai", datetime(2026, 6, 1, 15, 0), datetime(2026, 6, 2, 1, 0), "UTC"),
        # 07:30 in Shanghai → 09:00 the same local day
        ("Asia/Shanghai", datetime(2026, 5, 31, 23, 30), datetime(2026, 6, 1, 1, 0), "America/Los_Angeles"),
        # 23:00 EST on 7 March 2026; clocks spring forward that night → 09:00 EDT = 13:00 UTC
        ("America/New_York", datetime(2026, 3, 8, 4, 0), datetime(2026, 3, 8, 13, 0), "Asia/Shanghai"),
        # 23:00 EDT on 31 October 2026; clocks fall back that night → 09:00 EST = 14:00 UTC
        ("America/New_York", datetime(2026, 11, 1, 3, 0), datetime(2026, 11, 1, 14, 0), "Asia/Shanghai"),
    ],
)
def test_sms_outside_the_window_waits_for_the_next_local_opening(
    engine: Engine, tz: str, now: datetime, opening: datetime, daytime_tz: str
) -> None:
    # Given a customer in ``tz`` and one where it is daytime, both SMS-only
    with transaction(engine) as s:
        for ext, zone in (("far", tz), ("day", daytime_tz)):
            c = add_customer(s, ext, tz=zone, consent={"sms": "granted"})
            add_order(s, c, now - 40 * DAY)

    # When the SMS rule is planned (default policy: SMS 09:00–21:00 local)
    result, rows = plan_run(engine, SMS_RULE, now)

    # Then the far customer's SMS is stored, not queued, until 09:00 their time
    assert rows["far"].status is MessageStatus.PLANNED
    assert rows["far"].not_before == opening
    assert rows["day"].status is MessageStatus.QUEUED and rows["day"].not_before is None
    assert (result.planned, result.queued) == (2, 1)


def test_deferred_sms_is_sent_by_the_first_run_after_the_window_opens(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given an SMS deferred at 23:00 in Shanghai until 01:00 UTC
    evening = datetime(2026, 6, 1, 15, 0)
    with transaction(engine) as s:
        c = add_customer(s, "wang", tz="Asia/Shanghai", phone="+8613800000001", consent={"sms": "granted"})
        add_order(s, c, evening - 40 * DAY)
    _, rows = plan_run(engine, SMS_RULE, evening)
    assert rows["wang"].not_before == datetime(2026, 6, 2, 1, 0)
    settings = make_settings(tmp_path, db_url)

    # When `outreach run` ticks a minute before the opening, nothing goes out
    launch(settings, engine, [], now=datetime(2026, 6, 2, 0, 59), simulated=True)
    assert rows_by_customer(engine)["wang"][0].status is MessageStatus.PLANNED
    assert outbox_recipients(tmp_path) == ([], [])

    # When it ticks at the opening, the SMS is queued and delivered
    launch(settings, engine, [], now=datetime(2026, 6, 2, 1, 0), simulated=True)
    assert rows_by_customer(engine)["wang"][0].status is MessageStatus.SENT
    assert outbox_recipients(tmp_path) == ([], ["+8613800000001"])

    # And a later tick sends nothing twice
    launch(settings, engine, [], now=datetime(2026, 6, 2, 2, 0), simulated=True)
    assert outbox_recipients(tmp_path) == ([], ["+8613800000001"])


def test_sms_outside_the_local_window_is_deferred_then_sent(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a New York customer (21:00 local) and a Shanghai one (10:00 local), SMS only
    with transaction(engine) as s:
        lapsed_by_morning(s, "ny", tz="America/New_York", email=None, consent={"sms": "granted"})
        lapsed_by_morning(s, "sh", tz="Asia/Shanghai", email=None, consent={"sms": "granted"})
    settings = make_settings(tmp_path, db_url)
    rule = loaded_rule(rule_text("sms-only", priority=1, channels="[sms]"))
    launch(settings, engine, [rule], now=MORNING, simulated=True, ruleset=RULESET)
    # Then Shanghai gets it now; New York waits for 09:00 local (13:00 UTC), not dropped
    assert messages(engine) == [("sms-only", "ny", "sms", "planned"), ("sms-only", "sh", "sms", "sent")]
    with Session(engine) as s:
        assert s.scalar(select(Message.not_before).where(Message.status == MessageStatus.PLANNED)) == \
            datetime(2026, 6, 1, 13, 0)
    # When a run happens before the window opens, nothing changes; after it, it is sent
    launch(settings, engine, [], now=datetime(2026, 6, 1, 12, 59), simulated=True, ruleset=RULESET)
    assert messages(engine)[0][3] == "planned"
    launch(settings, engine, [], now=datetime(2026, 6, 1, 13, 0), simulated=True, ruleset=RULESET)
    assert [m[3] for m in messages(engine)] == ["sent", "sent"]
    assert len((tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()) == 2


def test_rule_send_window_overrides_the_policy(engine: Engine) -> None:
    late = rule("""
name: late-sms
trigger: {type: inactivity, days: 30}
template: winback
channels: [sms]
send_window: {start: "07:00", end: "23:30"}
""")
    office_hours = rule("""
name: office-email
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
send_window: {start: "10:00", end: "12:00"}
""")
    now = datetime(2026, 6, 1, 15, 0)  # 23:00 in Shanghai, 15:00 in UTC
    with transaction(engine) as s:
        for ext, tz in (("sh", "Asia/Shanghai"), ("utc", "UTC")):
            add_order(s, add_customer(s, ext, tz=tz, consent=BOTH), now - 40 * DAY)

    # The rule allows SMS until 23:30, so 23:00 in Shanghai is inside its window
    # (the policy's 21:00 does not apply)
    _, sms = plan_run(engine, late, now)
    assert sms["sh"].status is MessageStatus.QUEUED and sms["sh"].not_before is None
    # The policy has no email window, but the rule's 10:00–12:00 defers email
    _, mail = plan_run(engine, office_hours, now)
    assert mail["sh"].not_before == datetime(2026, 6, 2, 2, 0)  # 10:00 in Shanghai
    assert mail["utc"].not_before == datetime(2026, 6, 2, 10, 0)
    assert {r.status for r in mail.values()} == {MessageStatus.PLANNED}


def test_held_out_rows_never_get_not_before(engine: Engine) -> None:
    control = rule("""
name: all-control
trigger: {type: inactivity, days: 30}
template: winback
channels: [sms]
holdout_percent: 100
""")
    now = datetime(2026, 6, 1, 15, 0)  # 23:00 in Shanghai
    with transaction(engine) as s:
        add_order(s, add_customer(s, "sh", tz="Asia/Shanghai", consent={"sms": "granted"}), now - 40 * DAY)

    result, rows = plan_run(engine, control, now)

    assert rows["sh"].status is MessageStatus.HELD_OUT and rows["sh"].not_before is None
    assert (result.held_out, result.queued) == (1, 0)


def test_email_is_not_deferred_by_the_sms_window(engine: Engine) -> None:
    # Given the documented default policy (only SMS has a window) and a customer in
    # Shanghai who may receive both email and SMS
    now = datetime(2026, 6, 1, 15, 0)  # 23:00 in Shanghai
    with transaction(engine) as s:
        add_order(s, add_customer(s, "sh", tz="Asia/Shanghai", consent=BOTH), now - 40 * DAY)

    # When a rule preferring email is planned
    _, rows = plan_run(engine, PROMO, now)

    # Then the email goes now: the SMS quiet hours are not the email's
    assert rows["sh"].channel is Channel.EMAIL
    assert (rows["sh"].status, rows["sh"].not_before) == (MessageStatus.QUEUED, None)


def test_email_inside_its_window_is_not_deferred_by_a_narrower_sms_window(engine: Engine) -> None:
    rs = ruleset({"send_windows": {"email": {"start": "08:00", "end": "22:00"},
                                   "sms": {"start": "09:00", "end": "21:00"}}})
    now = datetime(2026, 6, 1, 13, 30)  # 21:30 in Shanghai
    with transaction(engine) as s:
        add_order(s, add_customer(s, "sh", tz="Asia/Shanghai", consent=BOTH), now - 40 * DAY)

    _, rows = plan_run(engine, PROMO, now, rs)

    assert rows["sh"].channel is Channel.EMAIL
    assert rows["sh"].not_before is None


# ------------------------------------------------------------------ holdout
def test_held_out_customers_never_reach_the_outbox(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given 16 lapsed customers and a rule with a 50% control group
    halves = rule("""
name: halves
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
holdout_percent: 50
""")
    with transaction(engine) as s:
        for n in range(16):
            lapsed(s, f"c{n:02d}")

    # When it is launched and delivered
    launch(make_settings(tmp_path, db_url), engine, [halves], now=NOW, simulated=True)

    # Then the outbox holds exactly the treated customers; the control group has
    # held_out rows; the Python statement of the assignment agrees with every row
    rows = {ext: msgs[0] for ext, msgs in rows_by_customer(engine, "halves").items()}
    assert len(rows) == 16
    held = {ext for ext, r in rows.items() if r.status is MessageStatus.HELD_OUT}
    treated = {ext for ext, r in rows.items() if r.status is MessageStatus.SENT}
    assert held and treated and held | treated == set(rows)
    emails, sms = outbox_recipients(tmp_path)
    assert sorted(emails) == sorted(f"{ext}@example.com" for ext in treated)
    assert sms == []
    for ext in rows:
        assert is_held_out("halves", ext, 50) == (ext in held), ext

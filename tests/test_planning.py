"""Planning: permission first, channel fallback, cooldown, idempotent runs and
a deterministic holdout — on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import (
    NOW,
    add_consent,
    add_customer,
    add_order,
    add_suppression,
    bulk_customers,
    loaded_rule,
    plan,
)
from outreach.domain import Channel, MessageStatus
from outreach.planning.launch import plan_rule
from outreach.rules import RuleSet, load_rule, load_rules
from outreach.store import holdout
from outreach.store.engine import make_engine, transaction
from outreach.store.models import Customer, Message, Rule

REPO = Path(__file__).resolve().parents[1]
DAY = timedelta(days=1)

EMAIL_ONLY = """
name: lapsed
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
"""

EMAIL_THEN_SMS = """
name: lapsed-any
trigger: {type: inactivity, days: 30}
template: winback
channels: [email, sms]
cost: {email: 0.01, sms: 0.05}
"""


def lapsed(s: Session, ext: str, **kwargs: object) -> Customer:
    """A customer whose last order was 40 days before NOW."""
    customer = add_customer(s, ext, **kwargs)  # type: ignore[arg-type]
    add_order(s, customer, NOW - 40 * DAY)
    return customer


# ------------------------------------------------------------------ permission
def test_permission_first(engine: Engine) -> None:
    # Given lapsed customers with every kind of consent history
    before = NOW - 10 * DAY
    with transaction(engine) as s:
        lapsed(s, "granted")
        lapsed(s, "no-consent", consent={})
        lapsed(s, "sms-consent-only", consent={"sms": "granted"})
        c = lapsed(s, "granted-then-revoked", consent={"email": "granted"})
        add_consent(s, c, "email", "revoked", at=before)
        c = lapsed(s, "revoked-then-granted", consent={"email": "revoked"})
        add_consent(s, c, "email", "granted", at=before)
        c = lapsed(s, "granted-after-now", consent={})
        add_consent(s, c, "email", "granted", at=NOW + timedelta(hours=1))
        c = lapsed(s, "revoked-after-now")
        add_consent(s, c, "email", "revoked", at=NOW + timedelta(hours=1))
        c = lapsed(s, "same-instant-revoked-last", consent={})
        add_consent(s, c, "email", "granted", at=before)
        add_consent(s, c, "email", "revoked", at=before)
        c = lapsed(s, "email-suppressed")
        add_suppression(s, "email", c.email, reason="bounce")
        c = lapsed(s, "phone-suppressed")
        add_suppression(s, "sms", c.phone, reason="stop")

    # When the email rule runs
    result, messages = plan(engine, EMAIL_ONLY, NOW)

    # Then only customers whose latest consent up to now is granted, and whose
    # address is not suppressed, get a message
    assert set(messages) == {
        "granted", "revoked-then-granted", "revoked-after-now", "phone-suppressed",
    }
    assert {m.channel for m in messages.values()} == {Channel.EMAIL}
    assert {m.status for m in messages.values()} == {MessageStatus.QUEUED}
    assert messages["granted"].to_address == "granted@example.com"
    assert result.planned == result.queued == 4


def test_channel_fallback_in_rule_order(engine: Engine) -> None:
    both = {"email": "granted", "sms": "granted"}
    with transaction(engine) as s:
        lapsed(s, "email-ok", consent=both)
        sms_only = lapsed(s, "sms-consent-only", consent={"sms": "granted"})
        lapsed(s, "no-consent", consent={})
        lapsed(s, "email-revoked", consent={"email": "revoked", "sms": "granted"})
        lapsed(s, "no-email-address", email=None, consent=both)
        lapsed(s, "empty-email", email="", consent=both)
        c = lapsed(s, "email-suppressed", consent=both)
        add_suppression(s, "email", c.email, reason="complaint")
        lapsed(s, "no-phone", phone=None, consent={"sms": "granted"})
        sms_phone = sms_only.phone

    _, messages = plan(engine, EMAIL_THEN_SMS, NOW)

    assert {ext: m.channel.value for ext, m in messages.items()} == {
        "email-ok": "email",
        "sms-consent-only": "sms",
        "email-revoked": "sms",
        "no-email-address": "sms",
        "empty-email": "sms",
        "email-suppressed": "sms",
    }
    assert messages["sms-consent-only"].to_address == sms_phone
    assert messages["email-ok"].cost == Decimal("0.01")
    assert messages["sms-consent-only"].cost == Decimal("0.05")


def test_channel_order_is_the_rules_preference(engine: Engine) -> None:
    with transaction(engine) as s:
        lapsed(s, "both", consent={"email": "granted", "sms": "granted"})
    rule = EMAIL_THEN_SMS.replace("[email, sms]", "[sms, email]")

    _, messages = plan(engine, rule, NOW)

    assert messages["both"].channel is Channel.SMS


# ------------------------------------------------------------------ repeats
def test_cooldown_blocks_a_second_message_then_allows_it(engine: Engine) -> None:
    rule = """
name: lapse-10
trigger: {type: inactivity, days: 10}
template: winback
channels: [email]
cooldown_days: 30
"""
    # Given a customer messaged on day 10 after their order on day 0
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_order(s, ada, NOW)
    assert set(plan(engine, rule, NOW + 10 * DAY)[1]) == {"ada"}

    # When they order on day 12 and lapse again on day 22 (a new occurrence)
    with transaction(engine) as s:
        add_order(s, ada, NOW + 12 * DAY)

    # Then the rule stays silent until 30 days after its last message
    assert plan(engine, rule, NOW + 22 * DAY)[1] == {}
    assert plan(engine, rule, NOW + 39 * DAY)[1] == {}
    assert set(plan(engine, rule, NOW + 40 * DAY)[1]) == {"ada"}
    # and another rule is not held back by this rule's cooldown
    other = rule.replace("name: lapse-10", "name: other-lapse")
    assert set(plan(engine, other, NOW + 41 * DAY)[1]) == {"ada"}


def test_a_second_launch_at_the_same_moment_plans_nothing(engine: Engine) -> None:
    with transaction(engine) as s:
        for n in range(5):
            lapsed(s, f"c{n}")

    first, messages = plan(engine, EMAIL_ONLY, NOW)
    second, again = plan(engine, EMAIL_ONLY, NOW)

    assert (first.planned, first.queued, len(messages)) == (5, 5, 5)
    assert (second.planned, second.held_out, second.queued, again) == (0, 0, 0, {})
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 5


def test_shipped_winback_rule_messages_lapsed_repeat_buyers_only(engine: Engine) -> None:
    loaded = load_rule(REPO / "rules" / "winback.yaml")
    with transaction(engine) as s:
        repeat = add_customer(s, "repeat")
        add_order(s, repeat, NOW - 200 * DAY)
        add_order(s, repeat, NOW - 95 * DAY)
        once = add_customer(s, "once")
        add_order(s, once, NOW - 95 * DAY)
        active = add_customer(s, "active")
        add_order(s, active, NOW - 200 * DAY)
        add_order(s, active, NOW - 20 * DAY)

    _, messages = plan(engine, loaded, NOW)

    assert set(messages) == {"repeat"}  # queued, or held out as control
    assert messages["repeat"].channel is Channel.EMAIL


def test_every_shipped_rule_plans_with_the_shipped_policy_and_segments(engine: Engine) -> None:
    # Given a small shop and the rules folder as shipped
    folder = REPO / "rules"
    ruleset = RuleSet.from_folder(folder)
    with transaction(engine) as s:
        for n, tz in enumerate(["UTC", "Asia/Shanghai", "America/New_York"]):
            c = add_customer(s, f"c{n}", tz=tz, birthday=date(1990, 6, 1),
                             consent={"email": "granted", "sms": "granted"})
            add_order(s, c, NOW - 100 * DAY, 300, items=[("LJ-100", "tea")])
            add_order(s, c, NOW - 95 * DAY, 200, items=[("LJ-100", "tea")])

    # When each shipped rule is planned twice, then a month later (no error)
    for loaded in load_rules(folder):
        for now in (NOW, NOW, NOW + 30 * DAY):
            plan_rule(engine, loaded, now=now, ruleset=ruleset)

    # Then no occurrence was messaged twice, and the lapsed repeat buyers got a win-back

    with transaction(engine) as s:
        repeats = s.execute(
            select(Message.rule_id, Message.customer_id, Message.occurrence_key, func.count())
            .group_by(Message.rule_id, Message.customer_id, Message.occurrence_key)
            .having(func.count() > 1)
        ).all()
        winback = s.scalars(
            select(Customer.external_id).join(Message, Message.customer_id == Customer.id)
            .join(Rule, Rule.id == Message.rule_id).where(Rule.name == "winback")
        ).all()
    assert repeats == []
    assert sorted(winback) == ["c0", "c1", "c2"]


# ------------------------------------------------------------------ holdout
HOLDOUT = """
name: birthday-holdout
trigger: {type: birthday}
template: birthday
channels: [email]
cooldown_days: 0
attribution_window_days: 14
cost: {email: 0.01}
holdout_percent: 10
"""
BIRTHDAY = date(1990, 6, 1)


def held_out(engine: Engine, now: datetime) -> tuple[set[str], set[str]]:
    """(held-out, messaged) external ids of one run of the holdout rule."""
    _, messages = plan(engine, HOLDOUT, now)
    held = {ext for ext, m in messages.items() if m.status is MessageStatus.HELD_OUT}
    return held, set(messages) - held


def test_holdout_is_the_same_on_every_database_and_every_run(
    engine: Engine, sqlite_template: Path, tmp_path: Path
) -> None:
    # Given the same 2,000 customers in this database and in a second SQLite one
    other_path = tmp_path / "second.db"
    shutil.copy(sqlite_template, other_path)
    other = make_engine(f"sqlite:///{other_path}")
    try:
        with transaction(engine) as s:
            ids = bulk_customers(s, 2000, birthday=BIRTHDAY)
        with transaction(other) as s:
            bulk_customers(s, 2000, birthday=BIRTHDAY)
        with transaction(engine) as s:
            by_id = {row.id: row.external_id for row in s.execute(select(Customer.id, Customer.external_id))}

        # When the birthday rule runs on both, this year and next year
        here, here_sent = held_out(engine, datetime(2026, 6, 1, 9))
        there, there_sent = held_out(other, datetime(2026, 6, 1, 9))
        next_year, _ = held_out(engine, datetime(2027, 6, 1, 9))
    finally:
        other.dispose()

    # Then the same customers are held out every time
    assert here == there == next_year
    assert here_sent == there_sent
    assert len(here) + len(here_sent) == 2000
    # and the Python statement of the rule agrees with what SQL chose
    predicted = {by_id[i] for i in ids if holdout.is_held_out("birthday-holdout", by_id[i], 10)}
    assert here == predicted
    assert 0 < len(here) < 2000


def test_held_out_rows_are_recorded_but_never_sent(engine: Engine) -> None:
    with transaction(engine) as s:
        bulk_customers(s, 300, birthday=BIRTHDAY)
    now = datetime(2026, 6, 1, 9)

    result, messages = plan(engine, HOLDOUT.replace("cooldown_days: 0", "cooldown_days: 300"), now)

    held = [m for m in messages.values() if m.status is MessageStatus.HELD_OUT]
    sent = [m for m in messages.values() if m.status is not MessageStatus.HELD_OUT]
    assert held and sent
    assert result.held_out == len(held)
    assert result.planned == result.queued == len(sent)
    for m in held:
        assert m.cost == Decimal("0")
        assert m.attribute_until == now + timedelta(days=14)
    for m in sent:
        assert m.status is MessageStatus.QUEUED
        assert m.cost == Decimal("0.01")
        assert m.attribute_until is None
    # A held-out customer is not messaged later in the cooldown either
    assert plan(engine, HOLDOUT.replace("cooldown_days: 0", "cooldown_days: 300"), now)[1] == {}


def held_out_of(engine: Engine, rule_name: str) -> set[str]:
    with transaction(engine) as s:
        return set(s.scalars(select(Customer.external_id).join(Message, Message.customer_id == Customer.id)
                             .join(Rule, Rule.id == Message.rule_id)
                             .where(Rule.name == rule_name, Message.status == MessageStatus.HELD_OUT)))


def test_holdout_proportion_and_independence_over_100000_customers(engine: Engine) -> None:
    # Given 100,000 customers whose birthday is today, all with email consent
    with transaction(engine) as s:
        bulk_customers(s, 100_000, birthday=BIRTHDAY)

    # When a rule with a 10 % holdout runs, and a second one with another name
    result, _ = plan(engine, HOLDOUT, datetime(2026, 6, 1, 9))
    plan(engine, HOLDOUT.replace("birthday-holdout", "birthday-care"), datetime(2026, 6, 1, 9))

    # Then every one is either messaged or held out, and 10 % are held out
    # (± 4 standard deviations of a fair 10 % draw: √(100,000 · 0.1 · 0.9) ≈ 95)
    assert result.planned + result.held_out == 100_000
    assert 9_620 <= result.held_out <= 10_380
    held, other = held_out_of(engine, "birthday-holdout"), held_out_of(engine, "birthday-care")
    assert held == {ext for n in range(100_000) if holdout.is_held_out("birthday-holdout", ext := f"c{n:06d}", 10)}
    # and the two rules' control groups share what independent draws share, 1 %
    # (± 5 standard deviations: √(100,000 · 0.01 · 0.99) ≈ 31; tests/test_holdout_groups.py says why)
    assert 9_620 <= len(other) <= 10_380
    assert abs(len(held & other) - len(held) * len(other) / 100_000) <= 5 * 31.5


def test_no_holdout_without_holdout_percent(engine: Engine) -> None:
    with transaction(engine) as s:
        bulk_customers(s, 200, birthday=BIRTHDAY)
    rule = loaded_rule(HOLDOUT.replace("holdout_percent: 10", "holdout_percent: 0"))

    result, messages = plan(engine, rule, datetime(2026, 6, 1, 9))

    assert (result.planned, result.held_out) == (200, 0)
    assert {m.status for m in messages.values()} == {MessageStatus.QUEUED}

"""Inactivity triggers: a message once a customer's last order — or, with
``event:``, their last such custom event — is ``days`` old (up to now, later
ones not yet counting); once per lapse, and with steps once per step reached
(only the highest, for a customer already past several) — through real
planning on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from factories import NOW, add_customer, add_event, add_order, plan
from outreach.store.engine import transaction
from policy_factories import plan_run, rows_by_customer, rule
from trigger_helpers import DAY, bare_recipients, recipients

INACTIVITY = """
name: winback-90
trigger: {type: inactivity, days: 90}
template: winback
channels: [email]
"""

STEPS = """
name: lapse-steps
trigger: {type: inactivity, days: [30, 60, 90]}
template: winback
channels: [email]
cooldown_days: 0
"""


# ------------------------------------------------------------------ days since the last order
def test_inactivity_boundaries(engine: Engine) -> None:
    # Given customers whose last order is at, just inside and beyond 90 days
    with transaction(engine) as s:
        add_order(s, add_customer(s, "exactly-90"), NOW - 90 * DAY)
        add_order(s, add_customer(s, "89d23h"), NOW - 89 * DAY - timedelta(hours=23))
        add_order(s, add_customer(s, "91"), NOW - 91 * DAY)
        add_customer(s, "never-ordered")
        lapsed_then_future = add_customer(s, "lapsed-then-future")
        add_order(s, lapsed_then_future, NOW - 100 * DAY)
        add_order(s, lapsed_then_future, NOW + 1 * DAY)  # not yet happened as of now
        add_order(s, add_customer(s, "only-future"), NOW + 1 * DAY)
        recent = add_customer(s, "old-and-recent")
        add_order(s, recent, NOW - 300 * DAY)
        add_order(s, recent, NOW - 5 * DAY)

    # When the rule runs as of now
    # Then only customers whose last order (up to now) is ≥ 90 days old hear from us
    assert bare_recipients(engine, INACTIVITY, NOW) == {"exactly-90", "91", "lapsed-then-future"}


def test_inactivity_one_message_per_lapse(engine: Engine) -> None:
    # Given a customer who last ordered on day 0
    start = NOW
    with transaction(engine) as s:
        ada = add_customer(s, "ada", at=start)
        add_order(s, ada, start)

    # When they lapse, one message; re-running in the same lapse plans nothing
    assert bare_recipients(engine, INACTIVITY, start + 90 * DAY) == {"ada"}
    assert bare_recipients(engine, INACTIVITY, start + 95 * DAY) == set()
    assert bare_recipients(engine, INACTIVITY, start + 200 * DAY) == set()

    # When they order again and lapse again, a second message
    with transaction(engine) as s:
        add_order(s, ada, start + 210 * DAY)
    assert bare_recipients(engine, INACTIVITY, start + 250 * DAY) == set()
    _, second = plan(engine, INACTIVITY, start + 300 * DAY)
    assert set(second) == {"ada"}
    assert bare_recipients(engine, INACTIVITY, start + 301 * DAY) == set()


# ------------------------------------------------------------------ steps
def test_inactivity_steps_message_once_per_threshold_reached(engine: Engine) -> None:
    rule = """
name: lapse-steps
trigger: {type: inactivity, days: [30, 60, 90]}
template: winback
channels: [email]
cooldown_days: 0
"""
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), NOW)
        add_order(s, add_customer(s, "bo"), NOW - 100 * DAY)

    # bo is already past the last step: one message (for 90), not three
    first = plan(engine, rule, NOW + 29 * DAY)[1]
    assert set(first) == {"bo"} and first["bo"].occurrence_key.startswith("inactivity:90:")
    assert set(plan(engine, rule, NOW + 30 * DAY)[1]) == {"ada"}
    assert bare_recipients(engine, rule, NOW + 45 * DAY) == set()
    assert bare_recipients(engine, rule, NOW + 60 * DAY) == {"ada"}
    assert bare_recipients(engine, rule, NOW + 90 * DAY) == {"ada"}
    assert bare_recipients(engine, rule, NOW + 400 * DAY) == set()


def test_inactivity_steps_send_only_the_highest_step_reached(engine: Engine) -> None:
    # Given a customer whose last order was 65 days ago
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), NOW - 65 * DAY)

    # When the rule runs today: only the 60-day step, not 30 and 60
    _, today = plan_run(engine, rule(STEPS), NOW)
    assert list(today) == ["ada"] and today["ada"].occurrence_key.startswith("inactivity:60:")
    # Five days later nothing new
    assert recipients(engine, STEPS, NOW + 5 * DAY) == set()
    # At day 95 the 90-day step is a new occurrence
    _, later = plan_run(engine, rule(STEPS), NOW + 30 * DAY)
    assert later["ada"].occurrence_key.startswith("inactivity:90:")
    assert [m.occurrence_key.split(":")[1] for m in rows_by_customer(engine)["ada"]] == ["60", "90"]


# ------------------------------------------------------------------ on a custom event
def test_inactivity_on_a_custom_event(engine: Engine) -> None:
    text = """
name: app-lapsed
trigger: {type: inactivity, days: 14, event: app_login}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        gone = add_customer(s, "gone")
        add_event(s, gone, "app_login", NOW - 20 * DAY)
        add_order(s, gone, NOW - 1 * DAY)  # orders do not matter here
        add_event(s, add_customer(s, "exactly-14"), "app_login", NOW - 14 * DAY)
        active = add_customer(s, "active")
        add_event(s, active, "app_login", NOW - 20 * DAY)
        add_event(s, active, "app_login", NOW - 2 * DAY)
        add_event(s, add_customer(s, "13-days"), "app_login", NOW - 13 * DAY)
        lapsed_buyer = add_customer(s, "never-logged-in")
        add_order(s, lapsed_buyer, NOW - 100 * DAY)
        add_event(s, add_customer(s, "other-event"), "page_view", NOW - 30 * DAY)
        future = add_customer(s, "login-after-now")
        add_event(s, future, "app_login", NOW - 30 * DAY)
        add_event(s, future, "app_login", NOW + 1 * DAY)

    assert recipients(engine, text, NOW) == {"gone", "exactly-14", "login-after-now"}

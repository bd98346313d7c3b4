"""Triggers: who is messaged, when, and how often — through real planning on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Engine

from factories import NOW, add_customer, add_event, add_order, plan
from outreach.store.engine import transaction

DAY = timedelta(days=1)

INACTIVITY = """
name: winback-90
trigger: {type: inactivity, days: 90}
template: winback
channels: [email]
"""

CROSS_SELL = """
name: teaware
trigger:
  type: cross_sell
  bought: {category: tea, within_days: 30}
  never_bought: {category: teaware}
template: upsell-teaware
channels: [email]
cooldown_days: 60
"""

BIRTHDAY = """
name: birthday
trigger: {type: birthday}
template: birthday
channels: [email]
cooldown_days: 0
"""


def recipients(engine: Engine, rule: str, now: datetime) -> set[str]:
    """Customers this run planned a message for."""
    return set(plan(engine, rule, now)[1])


# ------------------------------------------------------------------ inactivity
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
    assert recipients(engine, INACTIVITY, NOW) == {"exactly-90", "91", "lapsed-then-future"}


def test_inactivity_one_message_per_lapse(engine: Engine) -> None:
    # Given a customer who last ordered on day 0
    start = NOW
    with transaction(engine) as s:
        ada = add_customer(s, "ada", at=start)
        add_order(s, ada, start)

    # When they lapse, one message; re-running in the same lapse plans nothing
    assert recipients(engine, INACTIVITY, start + 90 * DAY) == {"ada"}
    assert recipients(engine, INACTIVITY, start + 95 * DAY) == set()
    assert recipients(engine, INACTIVITY, start + 200 * DAY) == set()

    # When they order again and lapse again, a second message
    with transaction(engine) as s:
        add_order(s, ada, start + 210 * DAY)
    assert recipients(engine, INACTIVITY, start + 250 * DAY) == set()
    _, second = plan(engine, INACTIVITY, start + 300 * DAY)
    assert set(second) == {"ada"}
    assert recipients(engine, INACTIVITY, start + 301 * DAY) == set()


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
    assert recipients(engine, rule, NOW + 45 * DAY) == set()
    assert recipients(engine, rule, NOW + 60 * DAY) == {"ada"}
    assert recipients(engine, rule, NOW + 90 * DAY) == {"ada"}
    assert recipients(engine, rule, NOW + 400 * DAY) == set()


# ------------------------------------------------------------------ cross-sell
def test_cross_sell_bought_x_in_window_and_never_y(engine: Engine) -> None:
    with transaction(engine) as s:
        add_order(s, add_customer(s, "tea-recent"), NOW - 10 * DAY, items=[("LJ-100", "tea")])
        owner = add_customer(s, "owns-teaware-long-ago")
        add_order(s, owner, NOW - 400 * DAY, items=[("TP-1", "teaware")])
        add_order(s, owner, NOW - 10 * DAY, items=[("LJ-100", "tea")])
        add_order(s, add_customer(s, "tea-too-old"), NOW - 31 * DAY, items=[("LJ-100", "tea")])
        add_order(
            s, add_customer(s, "same-order"), NOW - 3 * DAY,
            items=[("LJ-100", "tea"), ("TP-1", "teaware")],
        )
        later = add_customer(s, "teaware-after-now")
        add_order(s, later, NOW - 3 * DAY, items=[("LJ-100", "tea")])
        add_order(s, later, NOW + 2 * DAY, items=[("TP-1", "teaware")])
        add_order(s, add_customer(s, "tea-after-now"), NOW + 1 * DAY, items=[("LJ-100", "tea")])
        add_order(s, add_customer(s, "other-category"), NOW - 3 * DAY, items=[("MC-1", "snacks")])
        add_customer(s, "no-orders")

    assert recipients(engine, CROSS_SELL, NOW) == {"tea-recent", "teaware-after-now"}


def test_cross_sell_matches_by_sku(engine: Engine) -> None:
    rule = """
name: pot-for-longjing
trigger:
  type: upsell
  bought: {sku: [LJ-100, LJ-200], within_days: 14}
  never_bought: {sku: TP-LJ}
template: upsell-teaware
channels: [email]
"""
    with transaction(engine) as s:
        add_order(s, add_customer(s, "lj100"), NOW - 1 * DAY, items=[("LJ-100", "tea")])
        add_order(s, add_customer(s, "lj200"), NOW - 13 * DAY, items=[("LJ-200", "tea")])
        add_order(s, add_customer(s, "other-tea"), NOW - 1 * DAY, items=[("BL-1", "tea")])
        has_pot = add_customer(s, "has-pot")
        add_order(s, has_pot, NOW - 1 * DAY, items=[("LJ-100", "tea")])
        add_order(s, has_pot, NOW - 900 * DAY, items=[("TP-LJ", "teaware")])
        other_pot = add_customer(s, "other-pot")  # a different teapot does not count
        add_order(s, other_pot, NOW - 1 * DAY, items=[("LJ-100", "tea")])
        add_order(s, other_pot, NOW - 5 * DAY, items=[("TP-XX", "teaware")])

    assert recipients(engine, rule, NOW) == {"lj100", "lj200", "other-pot"}


def test_cross_sell_one_message_per_customer_for_several_orders(engine: Engine) -> None:
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        for days in (2, 9, 20):
            add_order(s, ada, NOW - days * DAY, items=[("LJ-100", "tea")])

    result, messages = plan(engine, CROSS_SELL, NOW)

    assert set(messages) == {"ada"}
    assert result.planned == 1


def test_cross_sell_new_qualifying_order_is_a_new_occurrence_after_cooldown(engine: Engine) -> None:
    # Given a tea buyer messaged once (cooldown 60 days)
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_order(s, ada, NOW - 1 * DAY, items=[("LJ-100", "tea")])
    first = plan(engine, CROSS_SELL, NOW)[1]
    assert set(first) == {"ada"}

    # When they buy tea again within the cooldown, nothing
    with transaction(engine) as s:
        add_order(s, ada, NOW + 20 * DAY, items=[("LJ-100", "tea")])
    assert recipients(engine, CROSS_SELL, NOW + 21 * DAY) == set()

    # When they buy tea again after the cooldown, a new message
    with transaction(engine) as s:
        add_order(s, ada, NOW + 70 * DAY, items=[("LJ-100", "tea")])
    second = plan(engine, CROSS_SELL, NOW + 71 * DAY)[1]
    assert set(second) == {"ada"}
    assert second["ada"].occurrence_key != first["ada"].occurrence_key


def test_cross_sell_same_purchase_is_never_messaged_twice(engine: Engine) -> None:
    # Given a long window and no cooldown, the same purchase stays eligible
    rule = CROSS_SELL.replace("within_days: 30", "within_days: 365").replace(
        "cooldown_days: 60", "cooldown_days: 0"
    )
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), NOW - 1 * DAY, items=[("LJ-100", "tea")])

    assert recipients(engine, rule, NOW) == {"ada"}
    assert recipients(engine, rule, NOW + 40 * DAY) == set()
    assert recipients(engine, rule, NOW + 200 * DAY) == set()


# ------------------------------------------------------------------ events
def test_event_where_compares_properties_as_the_rule_writes_them(engine: Engine) -> None:
    rule = """
name: big-carts
trigger:
  type: event
  name: cart_abandoned
  where: {value: {gte: 100}, gift: {eq: true}}
  delay_minutes: 60
template: cart
channels: [email]
"""
    two_hours_ago = NOW - timedelta(hours=2)
    with transaction(engine) as s:
        add_event(s, add_customer(s, "big"), "cart_abandoned", two_hours_ago, value=120, gift=True)
        add_event(s, add_customer(s, "big-text"), "cart_abandoned", two_hours_ago, value="150", gift="true")
        add_event(s, add_customer(s, "small"), "cart_abandoned", two_hours_ago, value=80, gift=True)
        # Values no number or boolean reading fits never match (and never break the query)
        add_event(s, add_customer(s, "odd"), "cart_abandoned", two_hours_ago, value="lots", gift="maybe")
        add_event(s, add_customer(s, "too-fresh"), "cart_abandoned", NOW - timedelta(minutes=30),
                  value=500, gift=True)
        add_event(s, add_customer(s, "other-event"), "wishlist", two_hours_ago, value=500, gift=True)

    assert recipients(engine, rule, NOW) == {"big", "big-text"}


# ------------------------------------------------------------------ birthday
def birthday_shop(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "shanghai-14", tz="Asia/Shanghai", birthday=date(1990, 3, 14))
        add_customer(s, "shanghai-15", tz="Asia/Shanghai", birthday=date(1990, 3, 15))
        add_customer(s, "la-14", tz="America/Los_Angeles", birthday=date(1985, 3, 14))
        add_customer(s, "la-15", tz="America/Los_Angeles", birthday=date(1985, 3, 15))
        add_customer(s, "utc-14", tz="UTC", birthday=date(2000, 3, 14))
        add_customer(s, "no-birthday", tz="UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_birthday_uses_the_customers_local_date(engine: Engine) -> None:
    # Given customers born on 14 and 15 March in Shanghai (UTC+8), Los Angeles
    # (UTC-7 in March 2026) and UTC
    birthday_shop(engine)

    # 15:59Z: 23:59 on the 14th in Shanghai, 08:59 on the 14th in LA
    assert recipients(engine, BIRTHDAY, at("2026-03-14T15:59")) == {"shanghai-14", "la-14", "utc-14"}
    # 16:00Z: midnight — the 15th has begun in Shanghai, not elsewhere
    assert recipients(engine, BIRTHDAY, at("2026-03-14T16:00")) == {"shanghai-15"}
    # 06:59Z on the 15th: still 23:59 on the 14th in LA (already messaged)
    assert recipients(engine, BIRTHDAY, at("2026-03-15T06:59")) == set()
    # 07:00Z: midnight on the 15th in LA
    assert recipients(engine, BIRTHDAY, at("2026-03-15T07:00")) == {"la-15"}


def test_birthday_each_moment_on_its_own(engine: Engine) -> None:
    # Given the same customers, and a fresh rule (no earlier occurrences) per moment
    birthday_shop(engine)
    expected = {
        "2026-03-14T15:59": {"shanghai-14", "la-14", "utc-14"},
        "2026-03-14T16:00": {"shanghai-15", "la-14", "utc-14"},
        "2026-03-15T06:59": {"shanghai-15", "la-14"},
        "2026-03-15T07:00": {"shanghai-15", "la-15"},
    }
    actual = {
        now: recipients(engine, BIRTHDAY.replace("name: birthday", f"name: birthday-{i}"), at(now))
        for i, now in enumerate(expected)
    }
    assert actual == expected


def test_birthday_days_before(engine: Engine) -> None:
    rule = BIRTHDAY.replace("{type: birthday}", "{type: birthday, days_before: 5}")
    with transaction(engine) as s:
        add_customer(s, "march-20", birthday=date(1990, 3, 20))
        add_customer(s, "jan-2", birthday=date(1990, 1, 2))

    assert recipients(engine, rule, at("2026-03-14T12:00")) == set()
    assert set(plan(engine, rule, at("2026-03-15T12:00"))[1]) == {"march-20"}
    assert recipients(engine, rule, at("2026-03-20T12:00")) == set()
    # Five days before 2 January is in the previous year: it counts for the new one
    early = plan(engine, rule, at("2025-12-28T12:00"))[1]
    assert set(early) == {"jan-2"}
    assert early["jan-2"].occurrence_key == "birthday:2026"
    assert recipients(engine, rule, at("2026-12-28T12:00")) == {"jan-2"}


def test_leap_day_birthday(engine: Engine) -> None:
    # Given one customer born on 29 Feb and one on 28 Feb
    with transaction(engine) as s:
        add_customer(s, "feb-29", birthday=date(2000, 2, 29))
        add_customer(s, "feb-28", birthday=date(2001, 2, 28))

    # In common years the 29th is celebrated on the 28th
    assert recipients(engine, BIRTHDAY, at("2026-02-27T12:00")) == set()
    assert recipients(engine, BIRTHDAY, at("2026-02-28T12:00")) == {"feb-29", "feb-28"}
    assert recipients(engine, BIRTHDAY, at("2026-03-01T12:00")) == set()
    assert recipients(engine, BIRTHDAY, at("2027-02-28T12:00")) == {"feb-29", "feb-28"}
    # In a leap year, on the day itself
    assert recipients(engine, BIRTHDAY, at("2028-02-28T12:00")) == {"feb-28"}
    assert recipients(engine, BIRTHDAY, at("2028-02-29T12:00")) == {"feb-29"}
    assert recipients(engine, BIRTHDAY, at("2028-03-01T12:00")) == set()


def test_birthday_once_per_year(engine: Engine) -> None:
    # Given no cooldown: only the occurrence (the year) prevents a repeat
    with transaction(engine) as s:
        add_customer(s, "ada", birthday=date(1990, 6, 1))

    assert recipients(engine, BIRTHDAY, at("2026-06-01T09:00")) == {"ada"}
    assert recipients(engine, BIRTHDAY, at("2026-06-01T09:00")) == set()
    assert recipients(engine, BIRTHDAY, at("2026-06-01T20:00")) == set()
    assert recipients(engine, BIRTHDAY, at("2027-06-01T09:00")) == {"ada"}


def test_birthday_on_the_dst_change_day(engine: Engine) -> None:
    # New York springs forward on 2026-03-08 at 02:00 local: EST (UTC-5) before,
    # EDT (UTC-4) after. The local date still turns over at local midnight.
    with transaction(engine) as s:
        add_customer(s, "ny-8", tz="America/New_York", birthday=date(1980, 3, 8))
        add_customer(s, "ny-9", tz="America/New_York", birthday=date(1980, 3, 9))

    assert recipients(engine, BIRTHDAY, at("2026-03-08T04:59")) == set()  # 23:59 on the 7th
    assert recipients(engine, BIRTHDAY, at("2026-03-08T05:00")) == {"ny-8"}  # 00:00 EST
    assert recipients(engine, BIRTHDAY, at("2026-03-09T03:59")) == set()  # 23:59 EDT on the 8th
    assert recipients(engine, BIRTHDAY, at("2026-03-09T04:00")) == {"ny-9"}  # 00:00 EDT


def test_birthday_in_an_unknown_time_zone_follows_utc(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "mars", tz="Mars/Olympus_Mons", birthday=date(1990, 3, 15))

    assert recipients(engine, BIRTHDAY, at("2026-03-14T23:59")) == set()
    assert recipients(engine, BIRTHDAY, at("2026-03-15T00:00")) == {"mars"}

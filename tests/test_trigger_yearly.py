"""Yearly triggers — birthdays and anniversaries (of the signup or the first
order): on the customer's local date (their time zone, across DST changes; an
unknown zone reads as UTC), ``days_before`` ahead, 29 February celebrated on 28
February in common years, once a year — through real planning on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Engine

from factories import NOW, add_customer, add_order, plan
from outreach.store.engine import transaction
from policy_factories import plan_run, rule
from trigger_helpers import DAY, bare_recipients, recipients

BIRTHDAY = """
name: birthday
trigger: {type: birthday}
template: birthday
channels: [email]
cooldown_days: 0
"""


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
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-14T15:59")) == {"shanghai-14", "la-14", "utc-14"}
    # 16:00Z: midnight — the 15th has begun in Shanghai, not elsewhere
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-14T16:00")) == {"shanghai-15"}
    # 06:59Z on the 15th: still 23:59 on the 14th in LA (already messaged)
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-15T06:59")) == set()
    # 07:00Z: midnight on the 15th in LA
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-15T07:00")) == {"la-15"}


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
        now: bare_recipients(engine, BIRTHDAY.replace("name: birthday", f"name: birthday-{i}"), at(now))
        for i, now in enumerate(expected)
    }
    assert actual == expected


def test_birthday_days_before(engine: Engine) -> None:
    rule = BIRTHDAY.replace("{type: birthday}", "{type: birthday, days_before: 5}")
    with transaction(engine) as s:
        add_customer(s, "march-20", birthday=date(1990, 3, 20))
        add_customer(s, "jan-2", birthday=date(1990, 1, 2))

    assert bare_recipients(engine, rule, at("2026-03-14T12:00")) == set()
    assert set(plan(engine, rule, at("2026-03-15T12:00"))[1]) == {"march-20"}
    assert bare_recipients(engine, rule, at("2026-03-20T12:00")) == set()
    # Five days before 2 January is in the previous year: it counts for the new one
    early = plan(engine, rule, at("2025-12-28T12:00"))[1]
    assert set(early) == {"jan-2"}
    assert early["jan-2"].occurrence_key == "birthday:2026"
    assert bare_recipients(engine, rule, at("2026-12-28T12:00")) == {"jan-2"}


def test_leap_day_birthday(engine: Engine) -> None:
    # Given one customer born on 29 Feb and one on 28 Feb
    with transaction(engine) as s:
        add_customer(s, "feb-29", birthday=date(2000, 2, 29))
        add_customer(s, "feb-28", birthday=date(2001, 2, 28))

    # In common years the 29th is celebrated on the 28th
    assert bare_recipients(engine, BIRTHDAY, at("2026-02-27T12:00")) == set()
    assert bare_recipients(engine, BIRTHDAY, at("2026-02-28T12:00")) == {"feb-29", "feb-28"}
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-01T12:00")) == set()
    assert bare_recipients(engine, BIRTHDAY, at("2027-02-28T12:00")) == {"feb-29", "feb-28"}
    # In a leap year, on the day itself
    assert bare_recipients(engine, BIRTHDAY, at("2028-02-28T12:00")) == {"feb-28"}
    assert bare_recipients(engine, BIRTHDAY, at("2028-02-29T12:00")) == {"feb-29"}
    assert bare_recipients(engine, BIRTHDAY, at("2028-03-01T12:00")) == set()


def test_birthday_once_per_year(engine: Engine) -> None:
    # Given no cooldown: only the occurrence (the year) prevents a repeat
    with transaction(engine) as s:
        add_customer(s, "ada", birthday=date(1990, 6, 1))

    assert bare_recipients(engine, BIRTHDAY, at("2026-06-01T09:00")) == {"ada"}
    assert bare_recipients(engine, BIRTHDAY, at("2026-06-01T09:00")) == set()
    assert bare_recipients(engine, BIRTHDAY, at("2026-06-01T20:00")) == set()
    assert bare_recipients(engine, BIRTHDAY, at("2027-06-01T09:00")) == {"ada"}


def test_birthday_on_the_dst_change_day(engine: Engine) -> None:
    # New York springs forward on 2026-03-08 at 02:00 local: EST (UTC-5) before,
    # EDT (UTC-4) after. The local date still turns over at local midnight.
    with transaction(engine) as s:
        add_customer(s, "ny-8", tz="America/New_York", birthday=date(1980, 3, 8))
        add_customer(s, "ny-9", tz="America/New_York", birthday=date(1980, 3, 9))

    assert bare_recipients(engine, BIRTHDAY, at("2026-03-08T04:59")) == set()  # 23:59 on the 7th
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-08T05:00")) == {"ny-8"}  # 00:00 EST
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-09T03:59")) == set()  # 23:59 EDT on the 8th
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-09T04:00")) == {"ny-9"}  # 00:00 EDT


def test_birthday_in_an_unknown_time_zone_follows_utc(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "mars", tz="Mars/Olympus_Mons", birthday=date(1990, 3, 15))

    assert bare_recipients(engine, BIRTHDAY, at("2026-03-14T23:59")) == set()
    assert bare_recipients(engine, BIRTHDAY, at("2026-03-15T00:00")) == {"mars"}


# ------------------------------------------------------------------ anniversary
def anniversary(name: str, of: str = "signup", days_before: int = 0) -> str:
    return f"""
name: {name}
trigger: {{type: anniversary, of: {of}, days_before: {days_before}}}
template: birthday
channels: [email]
"""


def test_signup_anniversary_from_the_first_year_not_on_the_day_itself(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "year-one", created_at=datetime(2025, 6, 1, 12, 0))
        add_customer(s, "year-two", created_at=datetime(2024, 6, 1, 3, 0))
        add_customer(s, "signed-up-today", created_at=datetime(2026, 6, 1, 3, 0))
        add_customer(s, "tomorrow", created_at=datetime(2025, 6, 2, 12, 0))

    _, rows = plan_run(engine, rule(anniversary("signup-anniv")), NOW)

    assert set(rows) == {"year-one", "year-two"}
    assert {r.occurrence_key for r in rows.values()} == {"anniversary:signup:2026"}
    # Three days ahead, for a rule that says so
    assert recipients(engine, anniversary("early-anniv", days_before=3), NOW - 3 * DAY) == {
        "year-one", "year-two"
    }


def test_anniversary_uses_the_customers_local_date(engine: Engine) -> None:
    # 2026-05-31 16:00 UTC: already 1 June in Shanghai, still 31 May in Los Angeles
    now = datetime(2026, 5, 31, 16, 0)
    with transaction(engine) as s:
        add_customer(s, "sh-june-1", tz="Asia/Shanghai", created_at=datetime(2025, 6, 1, 12, 0))
        add_customer(s, "la-june-1", tz="America/Los_Angeles", created_at=datetime(2025, 6, 1, 12, 0))
        add_customer(s, "la-may-31", tz="America/Los_Angeles", created_at=datetime(2025, 5, 31, 20, 0))
        add_customer(s, "sh-may-31", tz="Asia/Shanghai", created_at=datetime(2025, 5, 31, 10, 0))

    assert recipients(engine, anniversary("tz-anniv"), now) == {"sh-june-1", "la-may-31"}


def test_anniversary_day_is_the_local_date_of_the_signup(engine: Engine) -> None:
    # Signups stored in UTC whose local calendar date differs from the UTC one
    with transaction(engine) as s:
        # 2025-05-31 17:00 UTC = 1 June 01:00 in Shanghai
        add_customer(s, "sh-local-june-1", tz="Asia/Shanghai", created_at=datetime(2025, 5, 31, 17, 0))
        # 2025-06-01 03:00 UTC = 31 May 20:00 in Los Angeles (daylight time, UTC−7)
        add_customer(s, "la-local-may-31", tz="America/Los_Angeles", created_at=datetime(2025, 6, 1, 3, 0))
        # 2025-01-01 07:30 UTC = 31 December 23:30 in Los Angeles (standard time, UTC−8)
        add_customer(s, "la-local-dec-31", tz="America/Los_Angeles", created_at=datetime(2025, 1, 1, 7, 30))
        # 2025-07-01 04:30 UTC = 1 July 00:30 in New York in summer (UTC−4);
        # with the winter offset it would still be 30 June
        add_customer(s, "ny-local-july-1", tz="America/New_York", created_at=datetime(2025, 7, 1, 4, 30))
        # An unknown zone reads as UTC
        add_customer(s, "nowhere-june-1", tz="Nowhere/Atlantis", created_at=datetime(2025, 6, 1, 3, 0))

    def at(moment: datetime) -> set[str]:
        return recipients(engine, anniversary(f"a{moment:%m%d%H}"), moment)

    # 31 May 2026, noon in Shanghai: nobody's local anniversary (31 May is
    # the Shanghai signup's UTC date, not its local one)
    assert at(datetime(2026, 5, 31, 4, 0)) == set()
    # 19:00 UTC: 1 June in Shanghai, noon on 31 May in Los Angeles
    assert at(datetime(2026, 5, 31, 19, 0)) == {"sh-local-june-1", "la-local-may-31"}
    # 1 June noon UTC: still 1 June in Shanghai; UTC for the unknown zone
    assert at(datetime(2026, 6, 1, 12, 0)) == {"sh-local-june-1", "nowhere-june-1"}
    assert at(datetime(2025, 12, 31, 20, 0)) == {"la-local-dec-31"}
    assert at(datetime(2026, 1, 1, 20, 0)) == set()
    assert at(datetime(2026, 6, 30, 16, 0)) == set()
    assert at(datetime(2026, 7, 1, 16, 0)) == {"ny-local-july-1"}


def test_leap_day_signup_is_celebrated_on_28_february_in_common_years(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "leap", created_at=datetime(2024, 2, 29, 12, 0))
        add_customer(s, "feb-28", created_at=datetime(2024, 2, 28, 12, 0))
        add_customer(s, "mar-1", created_at=datetime(2024, 3, 1, 12, 0))

    # 2026 is a common year: 28 February for both February customers, not 1 March
    assert recipients(engine, anniversary("leap-a"), datetime(2026, 2, 28, 12, 0)) == {"leap", "feb-28"}
    assert recipients(engine, anniversary("leap-b"), datetime(2026, 3, 1, 12, 0)) == {"mar-1"}
    # 2028 is a leap year: on the day itself
    assert recipients(engine, anniversary("leap-c"), datetime(2028, 2, 28, 12, 0)) == {"feb-28"}
    assert recipients(engine, anniversary("leap-d"), datetime(2028, 2, 29, 12, 0)) == {"leap"}


def test_first_order_anniversary(engine: Engine) -> None:
    with transaction(engine) as s:
        first = add_customer(s, "first-order-june-1")
        add_order(s, first, datetime(2025, 6, 1, 12, 0))
        add_order(s, first, datetime(2026, 1, 10, 12, 0))
        later = add_customer(s, "later-order-on-june-1")
        add_order(s, later, datetime(2024, 3, 3, 12, 0))
        add_order(s, later, datetime(2025, 6, 1, 12, 0))
        add_order(s, add_customer(s, "first-order-today"), datetime(2026, 6, 1, 8, 0))
        add_customer(s, "signed-up-june-1-never-ordered", created_at=datetime(2025, 6, 1, 12, 0))

    _, rows = plan_run(engine, rule(anniversary("order-anniv", of="first_order")), NOW)

    assert set(rows) == {"first-order-june-1"}
    assert rows["first-order-june-1"].occurrence_key == "anniversary:first_order:2026"

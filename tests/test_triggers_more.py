"""Triggers beyond the basics — inactivity steps and custom events, upsell
minimums, anniversaries, event delays/filters/cancellation, RFM/value/lifecycle
stats, named segments, lifecycle and segment-entry triggers — through real
planning on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, delete, select

from factories import NOW, add_consent, add_customer, add_event, add_order
from outreach.domain import MessageStatus
from outreach.errors import RuleError
from outreach.rules import RuleSet
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerTag
from policy_factories import (
    add_order_lines,
    customer_id,
    plan_run,
    rows_by_customer,
    rule,
    ruleset,
    stats_of,
    table_counts,
)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def recipients(engine: Engine, text: str, now: datetime, rs: RuleSet | None = None) -> set[str]:
    return set(plan_run(engine, rule(text), now, rs)[1])


# ------------------------------------------------------------------ inactivity
STEPS = """
name: lapse-steps
trigger: {type: inactivity, days: [30, 60, 90]}
template: winback
channels: [email]
cooldown_days: 0
"""


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


# ------------------------------------------------------------------ upsell minimums
def test_upsell_minimum_quantity_and_spend_on_one_orders_matching_items(engine: Engine) -> None:
    text = """
name: teapot-upsell
trigger:
  type: upsell
  bought: {sku: [LJ-100], within_days: 60, min_quantity: 3, min_amount: 150}
  never_bought: {sku: [LJ-500]}
template: upsell-teaware
channels: [email]
"""
    when = NOW - 10 * DAY
    with transaction(engine) as s:
        add_order_lines(s, add_customer(s, "exact"), when, [("LJ-100", "tea", 3, 150)])
        add_order_lines(s, add_customer(s, "two-lines"), when,
                        [("LJ-100", "tea", 1, 60), ("LJ-100", "tea", 2, 90)])
        add_order_lines(s, add_customer(s, "too-few"), when, [("LJ-100", "tea", 2, 200)])
        add_order_lines(s, add_customer(s, "too-cheap"), when, [("LJ-100", "tea", 5, 149.99)])
        # Spend on other products does not count towards the minimum
        add_order_lines(s, add_customer(s, "other-items"), when,
                        [("LJ-100", "tea", 3, 100), ("YX-POT", "teaware", 1, 500)])
        # Two orders that qualify only together do not qualify
        split = add_customer(s, "split")
        add_order_lines(s, split, when, [("LJ-100", "tea", 2, 100)])
        add_order_lines(s, split, when + HOUR, [("LJ-100", "tea", 2, 100)])
        owner = add_customer(s, "owns-lj500")
        add_order_lines(s, owner, when, [("LJ-100", "tea", 3, 150)])
        add_order_lines(s, owner, NOW - 300 * DAY, [("LJ-500", "teaware", 1, 400)])
        add_order_lines(s, add_customer(s, "too-long-ago"), NOW - 61 * DAY, [("LJ-100", "tea", 3, 150)])

    assert recipients(engine, text, NOW) == {"exact", "two-lines"}


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


# ------------------------------------------------------------------ event trigger
def test_event_delay_minutes(engine: Engine) -> None:
    text = """
name: cart-reminder
trigger: {type: event, name: cart_abandoned, delay_minutes: 60}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        add_event(s, add_customer(s, "ada"), "cart_abandoned", NOW - 59 * MINUTE)

    # 59 minutes after the event: not yet; 60 minutes after: yes
    assert recipients(engine, text, NOW) == set()
    assert recipients(engine, text, NOW + MINUTE) == {"ada"}


def test_event_max_age_hours(engine: Engine) -> None:
    text = """
name: cart-young
trigger: {type: event, name: cart_abandoned, max_age_hours: 48}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        add_event(s, add_customer(s, "47h59"), "cart_abandoned", NOW - 48 * HOUR + MINUTE)
        add_event(s, add_customer(s, "48h01"), "cart_abandoned", NOW - 48 * HOUR - MINUTE)
        add_event(s, add_customer(s, "future"), "cart_abandoned", NOW + MINUTE)

    assert recipients(engine, text, NOW) == {"47h59"}


def test_event_where_numeric_and_text_properties(engine: Engine) -> None:
    text = """
name: big-web-carts
trigger:
  type: event
  name: cart_abandoned
  where:
    cart_value: {gte: 100}
    channel: {in: [web, app]}
template: winback
channels: [email]
"""
    two_hours_ago = NOW - 2 * HOUR
    cases = {
        "web-150": {"cart_value": 150, "channel": "web"},
        "app-text-120": {"cart_value": "120", "channel": "app"},
        "exactly-100": {"cart_value": 100.0, "channel": "web"},
        "web-99": {"cart_value": 99.5, "channel": "web"},
        "lots": {"cart_value": "lots", "channel": "web"},
        "number-and-words": {"cart_value": "150 CNY", "channel": "web"},
        "nested": {"cart_value": {"amount": 500}, "channel": "web"},
        "no-value": {"channel": "web"},
        "store": {"cart_value": 500, "channel": "store"},
        "no-channel": {"cart_value": 500},
    }
    with transaction(engine) as s:
        for ext, properties in cases.items():
            add_event(s, add_customer(s, ext), "cart_abandoned", two_hours_ago, **properties)

    # Text that is not a number never matches a numeric comparison (and, on
    # PostgreSQL, does not break the query)
    assert recipients(engine, text, NOW) == {"web-150", "app-text-120", "exactly-100"}


def test_event_where_a_json_boolean_is_not_a_number(engine: Engine) -> None:
    text = """
name: paid-carts
trigger: {type: event, name: cart_abandoned, where: {items: {gte: 1}}}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        add_event(s, add_customer(s, "two-items"), "cart_abandoned", NOW - 2 * HOUR, items=2)
        add_event(s, add_customer(s, "boolean"), "cart_abandoned", NOW - 2 * HOUR, items=True)

    assert recipients(engine, text, NOW) == {"two-items"}


def test_event_cancelled_by_a_later_event_or_order(engine: Engine) -> None:
    cancel_both = """
name: cart-cancel-both
trigger: {type: event, name: cart_abandoned, cancel_on: [order_placed, order]}
template: winback
channels: [email]
"""
    cancel_event_only = cancel_both.replace("cart-cancel-both", "cart-cancel-event").replace(
        "[order_placed, order]", "[order_placed]"
    )
    cart_at = NOW - 3 * HOUR
    with transaction(engine) as s:
        add_event(s, add_customer(s, "abandoned"), "cart_abandoned", cart_at)
        placed = add_customer(s, "placed-after")
        add_event(s, placed, "cart_abandoned", cart_at)
        add_event(s, placed, "order_placed", cart_at + HOUR)
        before = add_customer(s, "placed-before")
        add_event(s, before, "order_placed", cart_at - HOUR)
        add_event(s, before, "cart_abandoned", cart_at)
        ordered = add_customer(s, "ordered-after")
        add_event(s, ordered, "cart_abandoned", cart_at)
        add_order(s, ordered, cart_at + 2 * HOUR)
        future = add_customer(s, "placed-after-now")
        add_event(s, future, "cart_abandoned", cart_at)
        add_event(s, future, "order_placed", NOW + HOUR)
        browsing = add_customer(s, "browsed-after")
        add_event(s, browsing, "cart_abandoned", cart_at)
        add_event(s, browsing, "page_view", cart_at + HOUR)

    assert recipients(engine, cancel_both, NOW) == {
        "abandoned", "placed-before", "placed-after-now", "browsed-after"
    }
    # Without `order` in cancel_on, an order does not cancel
    assert recipients(engine, cancel_event_only, NOW) == {
        "abandoned", "placed-before", "placed-after-now", "browsed-after", "ordered-after"
    }


def test_several_qualifying_events_give_one_message_per_run(engine: Engine) -> None:
    # Given a customer who abandoned two carts this afternoon, and a cap of one message a week
    text = """
name: cart-once
trigger: {type: event, name: cart_abandoned}
template: winback
channels: [email]
"""
    rs = ruleset({"frequency_cap": {"max_messages": 1, "days": 7}})
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_event(s, ada, "cart_abandoned", NOW - 3 * HOUR)
        latest = add_event(s, ada, "cart_abandoned", NOW - 2 * HOUR)

    # When the rule runs (and runs again an hour later)
    _, rows = plan_run(engine, rule(text), NOW, rs)
    assert recipients(engine, text, NOW + HOUR, rs) == set()

    # Then she gets one reminder, for the latest cart
    assert rows_by_customer(engine)["ada"] == [rows["ada"]]
    assert rows["ada"].occurrence_key == f"event:{latest.id}"


# ------------------------------------------------------------------ stats
EVERY_BUYER = """
name: {name}
trigger: {{type: inactivity, days: 1}}
segment: {segment}
template: winback
channels: [email]
"""


def test_rfm_scores_and_groups(engine: Engine) -> None:
    # Given five buyers with distinct recency, frequency and 12-month revenue, and a prospect
    with transaction(engine) as s:
        champ = add_customer(s, "champ")
        for days in (1, 10, 20, 30, 40):
            add_order(s, champ, NOW - days * DAY, 100)            # R5 F5 M5 (500)
        at_risk = add_customer(s, "slipping")
        for days in (300, 310, 320, 330):
            add_order(s, at_risk, NOW - days * DAY, 100)          # R2 F4 M4 (400)
        mid = add_customer(s, "middling")
        for days in (100, 150, 200):
            add_order(s, mid, NOW - days * DAY, 100)              # R3 F3 M3 (300)
        add_order(s, add_customer(s, "newbie"), NOW - 2 * DAY, 10)  # R4 F1 M1, one order
        sleepy = add_customer(s, "sleepy")
        for days in (350, 360):
            add_order(s, sleepy, NOW - days * DAY, 10)            # R1 F2 M2 (20)
        add_customer(s, "prospect")

    # When a rule for champions and new customers runs
    found = recipients(engine, EVERY_BUYER.format(name="rfm", segment="{stats: {rfm_segment: [champions, new]}}"), NOW)

    # Then it reaches exactly them, and the scores are as documented
    assert found == {"champ", "newbie"}
    stats = stats_of(engine)
    assert {ext: (st.r_score, st.f_score, st.m_score, st.rfm_segment) for ext, st in stats.items()} == {
        "champ": (5, 5, 5, "champions"),
        "slipping": (2, 4, 4, "at_risk"),
        "middling": (3, 3, 3, "promising"),
        "newbie": (4, 1, 1, "new"),
        "sleepy": (1, 2, 2, "hibernating"),
        "prospect": (None, None, None, None),
    }
    assert stats["champ"].clv == Decimal("1500.00")  # 500 in 12 months × 3 years
    slipping = EVERY_BUYER.format(name="scores", segment="{stats: {r_score: {lte: 2}, m_score: {gte: 4}}}")
    assert recipients(engine, slipping, NOW) == {"slipping"}


def test_vip_is_the_top_20_percent_by_revenue(engine: Engine) -> None:
    # Given ten buyers with revenues 100, 200, … 1000 and two prospects
    with transaction(engine) as s:
        for n in range(1, 11):
            add_order(s, add_customer(s, f"rev{n * 100:04d}"), NOW - 10 * DAY, n * 100)
        add_customer(s, "prospect-1")
        add_customer(s, "prospect-2")
    rs = ruleset(segments={"vip": {"stats": {"value_tier": "vip"}}})

    # When a rule for the named segment `vip` runs
    found = recipients(engine, EVERY_BUYER.format(name="vips", segment="{segment: vip}"), NOW, rs)

    # Then the two best customers are VIPs; everyone else, prospects included, is regular
    assert found == {"rev1000", "rev0900"}
    tiers = {ext: st.value_tier for ext, st in stats_of(engine).items()}
    assert {ext for ext, tier in tiers.items() if tier == "vip"} == {"rev1000", "rev0900"}
    assert tiers["prospect-1"] == "regular"


def lifecycle_shop(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "prospect")
        add_order(s, add_customer(s, "new"), NOW - 10 * DAY)
        active = add_customer(s, "active")
        add_order(s, active, NOW - 200 * DAY)
        add_order(s, active, NOW - 20 * DAY)
        at_risk = add_customer(s, "at-risk")
        add_order(s, at_risk, NOW - 400 * DAY)
        add_order(s, at_risk, NOW - 120 * DAY)
        inactive = add_customer(s, "inactive")
        add_order(s, inactive, NOW - 500 * DAY)
        add_order(s, inactive, NOW - 200 * DAY)
        steady = add_customer(s, "steady")
        add_order(s, steady, NOW - 500 * DAY)
        add_order(s, steady, NOW - 40 * DAY)
        back = add_customer(s, "win-back")  # ordered 10 days ago after 490 silent days
        add_order(s, back, NOW - 500 * DAY)
        add_order(s, back, NOW - 10 * DAY)


def test_lifecycle_stages_as_documented(engine: Engine) -> None:
    lifecycle_shop(engine)
    text = EVERY_BUYER.format(name="lapsing", segment="{stats: {lifecycle_stage: [at_risk, inactive]}}")

    assert recipients(engine, text, NOW) == {"at-risk", "inactive"}
    stages = {ext: st.lifecycle_stage for ext, st in stats_of(engine).items()}
    assert stages == {
        "prospect": "prospect",
        "new": "new",
        "active": "active",
        "at-risk": "at_risk",
        "inactive": "inactive",
        "steady": "steady",
        "win-back": "win_back",
    }


def test_lifecycle_thresholds_come_from_the_policy(engine: Engine) -> None:
    lifecycle_shop(engine)
    rs = ruleset({"lifecycle": {"at_risk_days": 25}})
    text = EVERY_BUYER.format(name="at-risk-25", segment="{stats: {lifecycle_stage: at_risk}}")

    # With at_risk after 25 days, the customer whose last order is 40 days old is at risk too
    assert recipients(engine, text, NOW, rs) == {"at-risk", "steady"}


def test_named_segments_nest(engine: Engine) -> None:
    rs = ruleset(segments={
        "tea-lovers": {"bought": {"category": "tea", "within_days": 365}},
        "newsletter-tea-lovers": {"all": [{"segment": "tea-lovers"}, {"tag": "newsletter"}]},
    })
    with transaction(engine) as s:
        add_order(s, add_customer(s, "both", tags=["newsletter"]), NOW - 40 * DAY, items=[("LJ-1", "tea")])
        add_order(s, add_customer(s, "tea-only"), NOW - 40 * DAY, items=[("LJ-1", "tea")])
        add_order(s, add_customer(s, "news-only", tags=["newsletter"]), NOW - 40 * DAY)

    text = EVERY_BUYER.format(name="nested", segment="{segment: newsletter-tea-lovers}")
    assert recipients(engine, text, NOW, rs) == {"both"}


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"vip": {"stats": {"value_tier": "vip"}}}, "unknown segment 'nope'"),
        ({"nope": {"all": [{"tag": "x"}, {"segment": "nope"}]}}, "segment 'nope' refers to itself"),
        ({"nope": {"segment": "other"}, "other": {"any": [{"segment": "nope"}]}}, "refers to itself"),
    ],
    ids=["unknown", "self", "loop"],
)
def test_bad_named_segment_is_a_rule_error_and_plans_nothing(
    engine: Engine, segments: dict, message: str
) -> None:
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), NOW - 40 * DAY)
    before = table_counts(engine)

    with pytest.raises(RuleError) as caught:
        plan_run(engine, rule(EVERY_BUYER.format(name="bad", segment="{segment: nope}")), NOW,
                 ruleset(segments=segments))

    problem = caught.value.problems[0]
    assert message in str(problem)
    assert problem.hint and "segments.yaml" in problem.hint
    assert table_counts(engine) == before


# ------------------------------------------------------------------ lifecycle trigger
AT_RISK = """
name: at-risk-care
trigger: {type: lifecycle, stage: at_risk, max_age_days: 7}
template: winback
channels: [email]
cooldown_days: 0
"""
#: Nobody becomes "active" (so leaving at_risk by ordering lands in steady).
NO_ACTIVE = {"lifecycle": {"active_orders": 10}}


def test_lifecycle_baseline_entry_and_reentry(engine: Engine) -> None:
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        already = add_customer(s, "already-at-risk")
        add_order(s, already, t0 - 400 * DAY)
        add_order(s, already, t0 - 100 * DAY)
        drifting = add_customer(s, "drifting")
        add_order(s, drifting, t0 - 400 * DAY)  # not "new": first order over 183 days ago
        add_order(s, drifting, t0 - 85 * DAY)

    # The first evaluation records the baseline: nobody is messaged
    assert recipients(engine, AT_RISK, t0, rs) == set()
    # Five days later drifting reaches 90 days without an order: entered, one message
    _, entered = plan_run(engine, rule(AT_RISK), t0 + 5 * DAY, rs)
    assert set(entered) == {"drifting"} and entered["drifting"].status is MessageStatus.QUEUED
    assert recipients(engine, AT_RISK, t0 + 6 * DAY, rs) == set()

    # Drifting orders (leaves the stage) and lapses again (re-enters): a new occurrence
    with transaction(engine) as s:
        add_order(s, drifting, t0 + 10 * DAY)
    assert recipients(engine, AT_RISK, t0 + 11 * DAY, rs) == set()
    assert recipients(engine, AT_RISK, t0 + 100 * DAY, rs) == {"drifting"}
    keys = [m.occurrence_key for m in rows_by_customer(engine)["drifting"]]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert "already-at-risk" not in rows_by_customer(engine)


def test_lifecycle_entries_older_than_max_age_are_ignored(engine: Engine) -> None:
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        baseline = add_customer(s, "baseline")  # the first evaluation is not empty
        add_order(s, baseline, t0 - 400 * DAY)
        add_order(s, baseline, t0 - 100 * DAY)
        soon = add_customer(s, "consents-soon", consent={})
        late = add_customer(s, "consents-late", consent={})
        for customer in (soon, late):
            add_order(s, customer, t0 - 400 * DAY)
            add_order(s, customer, t0 - 85 * DAY)
    assert recipients(engine, AT_RISK, t0, rs) == set()
    # Both enter at_risk on day 5 without consent: no message
    assert recipients(engine, AT_RISK, t0 + 5 * DAY, rs) == set()

    # One consents 3 days after entering, the other 8 days after
    with transaction(engine) as s:
        add_consent(s, soon, "email", "granted", at=t0 + 8 * DAY)
    assert recipients(engine, AT_RISK, t0 + 8 * DAY, rs) == {"consents-soon"}
    with transaction(engine) as s:
        add_consent(s, late, "email", "granted", at=t0 + 13 * DAY)
    assert recipients(engine, AT_RISK, t0 + 13 * DAY, rs) == set()


def test_lifecycle_entry_after_an_empty_first_evaluation_is_messaged(engine: Engine) -> None:
    # Given a shop where nobody is at risk yet when the rule first runs
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        drifting = add_customer(s, "drifting")
        add_order(s, drifting, t0 - 400 * DAY)
        add_order(s, drifting, t0 - 85 * DAY)
    assert recipients(engine, AT_RISK, t0, rs) == set()

    # When the first customer enters the stage
    # Then they are messaged: they were not in the stage at the first evaluation
    assert recipients(engine, AT_RISK, t0 + 5 * DAY, rs) == {"drifting"}


# ------------------------------------------------------------------ segment_entry trigger
BECAME_VIP = """
name: became-vip
trigger:
  type: segment_entry
  enters: {tag: vip}
template: winback
channels: [email]
cooldown_days: 0
"""


def set_tag(engine: Engine, ext: str, tag: str, present: bool) -> None:
    with transaction(engine) as s:
        cid = customer_id(engine, ext)
        if present:
            s.add(CustomerTag(customer_id=cid, tag=tag))
        else:
            s.execute(delete(CustomerTag).where(CustomerTag.customer_id == cid, CustomerTag.tag == tag))


def test_segment_entry_baseline_entry_and_reentry(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "old-vip", tags=["vip"])
        add_customer(s, "ada")

    assert recipients(engine, BECAME_VIP, NOW) == set()  # baseline

    set_tag(engine, "ada", "vip", True)
    assert recipients(engine, BECAME_VIP, NOW + 1 * DAY) == {"ada"}
    assert recipients(engine, BECAME_VIP, NOW + 2 * DAY) == set()

    set_tag(engine, "ada", "vip", False)
    assert recipients(engine, BECAME_VIP, NOW + 3 * DAY) == set()
    set_tag(engine, "ada", "vip", True)
    assert recipients(engine, BECAME_VIP, NOW + 4 * DAY) == {"ada"}

    messages = rows_by_customer(engine)
    assert set(messages) == {"ada"} and len({m.occurrence_key for m in messages["ada"]}) == 2


def test_segment_entry_on_stats_through_named_segments(engine: Engine) -> None:
    # Given five buyers; the best (top 20%) is the VIP
    rs = ruleset(segments={"vip": {"stats": {"value_tier": "vip"}}})
    text = """
name: welcome-vip
trigger: {type: segment_entry, enters: {segment: vip}, max_age_days: 3}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        for n in range(1, 6):
            add_order(s, add_customer(s, f"c{n}"), NOW - 30 * DAY, n * 100)
    assert recipients(engine, text, NOW, rs) == set()  # c5 is the baseline VIP

    # When c1 places a large order and overtakes everyone
    with transaction(engine) as s:
        c1 = s.scalar(select(Customer).where(Customer.external_id == "c1"))
        add_order(s, c1, NOW + 1 * DAY, 5000)

    # Then c1 entered the VIP segment and is welcomed, once
    assert recipients(engine, text, NOW + 2 * DAY, rs) == {"c1"}
    assert recipients(engine, text, NOW + 3 * DAY, rs) == set()
    assert stats_of(engine)["c5"].value_tier == "regular"

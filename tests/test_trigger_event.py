"""Custom event triggers (``cart_abandoned`` …): ``where`` filters on the
event's properties (numbers, text and booleans as the rule writes them; values
that fit no reading never match and never break the query), ``delay_minutes``,
``max_age_hours``, cancellation by a later event or order, and one message per
run for several qualifying events — through real planning on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from factories import NOW, add_customer, add_event, add_order
from outreach.store.engine import transaction
from policy_factories import plan_run, rows_by_customer, rule, ruleset
from trigger_helpers import HOUR, bare_recipients, recipients

MINUTE = timedelta(minutes=1)


# ------------------------------------------------------------------ where
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

    assert bare_recipients(engine, rule, NOW) == {"big", "big-text"}


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


# ------------------------------------------------------------------ delay and max age
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


# ------------------------------------------------------------------ cancellation
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


# ------------------------------------------------------------------ several events
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

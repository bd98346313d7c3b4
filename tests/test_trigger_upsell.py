"""Upsell and cross-sell triggers: bought X (by category or SKU, within the
last days, with a minimum quantity and spend on one order's matching items) and
never bought Y — one message per customer for several qualifying orders, a new
occurrence only for a new purchase after the cooldown — through real planning
on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from factories import NOW, add_customer, add_order, plan
from outreach.store.engine import transaction
from policy_factories import add_order_lines
from trigger_helpers import DAY, HOUR, bare_recipients, recipients

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


# ------------------------------------------------------------------ bought X, never Y
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

    assert bare_recipients(engine, CROSS_SELL, NOW) == {"tea-recent", "teaware-after-now"}


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

    assert bare_recipients(engine, rule, NOW) == {"lj100", "lj200", "other-pot"}


# ------------------------------------------------------------------ minimum quantity and spend
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


# ------------------------------------------------------------------ occurrences
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
    assert bare_recipients(engine, CROSS_SELL, NOW + 21 * DAY) == set()

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

    assert bare_recipients(engine, rule, NOW) == {"ada"}
    assert bare_recipients(engine, rule, NOW + 40 * DAY) == set()
    assert bare_recipients(engine, rule, NOW + 200 * DAY) == set()

"""Segments: who a condition selects, evaluated by the database (SQLite and
PostgreSQL must agree) — named segments (``rules/segments.yaml``) too, through
planning."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from factories import NOW, add_customer, add_order
from outreach.errors import RuleError
from outreach.rules import parse_rule
from outreach.store.engine import transaction
from outreach.store.models import Customer
from outreach.store.segments import compile_condition
from policy_factories import plan_run, rule, ruleset, table_counts
from trigger_helpers import DAY, EVERY_BUYER, recipients

RULE_HEAD = "name: seg\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\nsegment: "


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


@pytest.fixture
def shop(engine: Engine) -> Engine:
    """Four customers a marketer can reason about.

    ada  retail, en, vip; Hangzhou, age 41, vip=true; orders: 10 d ago 100 (tea LJ-100),
         100 d ago 200 (teaware TP-1), 400 d ago 300 (tea LJ-200)
    bo   business, de, no email, wholesale; Beijing, age "35"; 50 d ago 1000 (tea LJ-100)
    cy   distributor, fr, empty email; age "unknown", vip=false; only an order *after* now
    di   retail, en, vip+newsletter; vip="maybe"; 200 d ago 50, exactly 30 d ago 70
    """
    with transaction(engine) as s:
        ada = add_customer(
            s, "ada", tags=["vip"], birthday=date(1985, 4, 2), created_at=datetime(2024, 1, 1),
            attributes={"city": "Hangzhou", "age": 41, "vip": True},
        )
        add_order(s, ada, days_ago(10), 100, items=[("LJ-100", "tea")])
        add_order(s, ada, days_ago(100), 200, items=[("TP-1", "teaware")])
        add_order(s, ada, days_ago(400), 300, items=[("LJ-200", "tea")])
        bo = add_customer(
            s, "bo", email=None, customer_type="business", locale="de", tags=["wholesale"],
            created_at=datetime(2025, 3, 1), attributes={"city": "Beijing", "age": "35"},
        )
        add_order(s, bo, days_ago(50), 1000, items=[("LJ-100", "tea")])
        cy = add_customer(
            s, "cy", email="", customer_type="distributor", locale="fr",
            birthday=date(1979, 12, 31), created_at=datetime(2025, 1, 1),
            attributes={"age": "unknown", "vip": False},
        )
        add_order(s, cy, NOW + timedelta(days=5), 80, items=[("TP-2", "teaware")])
        di = add_customer(
            s, "di", tags=["vip", "newsletter"], birthday=date(1990, 6, 1),
            created_at=datetime(2023, 5, 5), attributes={"vip": "maybe"},
        )
        add_order(s, di, days_ago(200), 50)
        add_order(s, di, days_ago(30), 70)
    return engine


def members(engine: Engine, condition: str, now: datetime = NOW) -> set[str]:
    """External ids of the customers a YAML condition selects as of ``now``."""
    spec = parse_rule(RULE_HEAD + condition + "\n", file="seg.yaml")
    with transaction(engine) as s:
        query = select(Customer.external_id).where(compile_condition(spec.segment, now))
        return set(s.scalars(query))


def check(engine: Engine, expected: dict[str, set[str]]) -> None:
    """Every condition selects exactly the expected customers (all reported)."""
    actual = {condition: members(engine, condition) for condition in expected}
    assert actual == expected


def test_field_conditions_on_customer_columns(shop: Engine) -> None:
    check(shop, {
        "{field: customer_type, eq: business}": {"bo"},
        "{field: customer_type, in: [retail, distributor]}": {"ada", "cy", "di"},
        "{field: customer_type, exists: true}": {"ada", "bo", "cy", "di"},
        "{field: locale, not_in: [en]}": {"bo", "cy"},
        "{field: locale, ne: en}": {"bo", "cy"},
        # No address and an empty address are both "no email".
        "{field: email, exists: true}": {"ada", "di"},
        "{field: email, exists: false}": {"bo", "cy"},
        "{field: birthday, gt: '1980-01-01'}": {"ada", "di"},
        "{field: birthday, exists: false}": {"bo"},
        "{field: created_at, gte: '2025-01-01'}": {"bo", "cy"},
        "{field: created_at, lt: '2024-06-01T00:00:00+08:00'}": {"ada", "di"},
    })


def test_field_conditions_on_attributes(shop: Engine) -> None:
    check(shop, {
        "{field: attributes.city, eq: Hangzhou}": {"ada"},
        "{field: attributes.city, in: [Hangzhou, Beijing]}": {"ada", "bo"},
        # A customer whose city is unknown is in neither "Beijing" nor "not Beijing".
        "{field: attributes.city, not_in: [Beijing]}": {"ada"},
        "{field: attributes.city, exists: true}": {"ada", "bo"},
        "{field: attributes.city, exists: false}": {"cy", "di"},
    })


def test_numeric_attributes_compare_as_numbers_and_ignore_text(shop: Engine) -> None:
    # Given age 41 (number), "35" (text holding a number) and "unknown"
    check(shop, {
        "{field: attributes.age, gt: 36}": {"ada"},
        "{field: attributes.age, gte: 35}": {"ada", "bo"},
        "{field: attributes.age, lt: 100}": {"ada", "bo"},
        "{field: attributes.age, eq: 35}": {"bo"},
        "{field: attributes.age, in: [41, 35.0]}": {"ada", "bo"},
    })


def test_boolean_attributes_match_only_true_or_false(shop: Engine) -> None:
    # "maybe" is neither; it must not break the query on PostgreSQL either.
    check(shop, {
        "{field: attributes.vip, eq: true}": {"ada"},
        "{field: attributes.vip, eq: false}": {"cy"},
        "{field: attributes.vip, exists: true}": {"ada", "cy", "di"},
        # A JSON true/false is not the number 1/0 (SQLite's JSON_EXTRACT would say it is).
        "{field: attributes.vip, gte: 0}": set(),
        "{field: attributes.vip, eq: 1}": set(),
    })


def test_unknown_customer_type_is_a_located_rule_error_not_a_crash(shop: Engine) -> None:
    with pytest.raises(RuleError) as caught:
        members(shop, "{field: customer_type, in: [retail, wholesale]}")
    (problem,) = caught.value.problems
    assert "wholesale" in problem.message
    assert problem.hint and "distributor" in problem.hint


def test_tags(shop: Engine) -> None:
    check(shop, {
        "{tag: vip}": {"ada", "di"},
        "{tag: [wholesale, newsletter]}": {"bo", "di"},
        "{tag: nobody}": set(),
    })


def test_order_aggregates(shop: Engine) -> None:
    check(shop, {
        "{orders: {metric: count, gte: 2}}": {"ada", "di"},
        # cy's only order is after now: as of now, none.
        "{orders: {metric: count, eq: 0}}": {"cy"},
        "{orders: {metric: count, within_days: 60, gte: 1}}": {"ada", "bo", "di"},
        # The window is the last 30×24 h: an order exactly 30 days old is outside.
        "{orders: {metric: count, within_days: 30, gte: 1}}": {"ada"},
        "{orders: {metric: total, gte: 500}}": {"ada", "bo"},
        "{orders: {metric: total, within_days: 365, gte: 300}}": {"ada", "bo"},
        "{orders: {metric: total, lt: 100}}": {"cy"},
        "{orders: {metric: average, gte: 200}}": {"ada", "bo"},
        "{orders: {metric: average, lt: 100}}": {"di"},
    })


def test_days_since_orders(shop: Engine) -> None:
    check(shop, {
        "{orders: {metric: days_since_last, gte: 30}}": {"bo", "di"},
        "{orders: {metric: days_since_last, lt: 30}}": {"ada"},
        "{orders: {metric: days_since_last, lte: 10}}": {"ada"},
        "{orders: {metric: days_since_last, eq: 50}}": {"bo"},
        "{orders: {metric: days_since_first, gte: 365}}": {"ada"},
        # Only orders of the last 40 days count: bo's last is older, so bo has none.
        "{orders: {metric: days_since_last, within_days: 40, gte: 20}}": {"di"},
    })


def test_bought(shop: Engine) -> None:
    check(shop, {
        "{bought: {category: tea}}": {"ada", "bo"},
        "{bought: {category: tea, within_days: 30}}": {"ada"},
        "{bought: {category: teaware}}": {"ada"},  # cy's teaware is after now
        "{bought: {sku: TP-1}}": {"ada"},
        "{bought: {sku: [LJ-200, NOPE]}}": {"ada"},
        # sku OR category, within the window
        "{bought: {sku: LJ-100, category: teaware, within_days: 60}}": {"ada", "bo"},
    })


def test_all_any_not(shop: Engine) -> None:
    check(shop, {
        "{all: [{tag: vip}, {orders: {metric: count, gte: 3}}]}": {"ada"},
        "{any: [{field: customer_type, eq: business}, {tag: newsletter}]}": {"bo", "di"},
        "{not: {tag: vip}}": {"bo", "cy"},
        # Unknown city is "not Beijing".
        "{not: {field: attributes.city, eq: Beijing}}": {"ada", "cy", "di"},
        "{not: {orders: {metric: count, gte: 1}}}": {"cy"},
        "{all: [{any: [{tag: vip}, {field: locale, eq: de}]}, {not: {bought: {category: teaware}}}]}":
            {"bo", "di"},
        "{not: {not: {tag: wholesale}}}": {"bo"},
    })


def test_evaluating_as_of_the_past_ignores_later_orders(shop: Engine) -> None:
    # As of 60 days ago, bo (50 d ago) and ada's latest order (10 d ago) had not happened.
    then = days_ago(60)
    assert members(shop, "{orders: {metric: count, gte: 1}}", now=then) == {"ada", "di"}
    assert members(shop, "{orders: {metric: count, gte: 2}}", now=then) == {"ada"}
    assert members(shop, "{bought: {category: tea}}", now=then) == {"ada"}
    assert members(shop, "{orders: {metric: days_since_last, lte: 40}}", now=then) == {"ada"}


def test_numbers_written_unquoted_compare_as_text_on_text_fields(engine: Engine) -> None:
    # YAML reads 1001 and 13800000000 as numbers; a marketer means the text.
    with transaction(engine) as s:
        add_order(s, add_customer(s, "1001", phone="13800000000"), days_ago(3))
        add_order(s, add_customer(s, "1002", phone="13900000000"), days_ago(3))
        add_order(s, add_customer(s, "1003"), days_ago(3))
        add_order(s, add_customer(s, "bob"), days_ago(4))
    check(engine, {
        "{field: external_id, in: [1001, 1002]}": {"1001", "1002"},
        "{field: phone, eq: 13800000000}": {"1001"},
        # and aggregates read a quoted number as a number
        "{orders: {metric: count, gte: '1'}}": {"1001", "1002", "1003", "bob"},
        "{orders: {metric: days_since_last, gte: '4'}}": {"bob"},
    })


@pytest.mark.parametrize(
    "condition",
    [
        "{field: birthday, gt: '1990-13-01'}",
        "{field: birthday, eq: 1990}",
        "{field: email, eq: true}",
        "{orders: {metric: total, gte: lots}}",
    ],
)
def test_values_that_cannot_fit_the_field_are_rule_errors(condition: str) -> None:
    spec = parse_rule(RULE_HEAD + condition + "\n", file="seg.yaml")
    with pytest.raises(RuleError) as caught:
        compile_condition(spec.segment, NOW)
    (problem,) = caught.value.problems
    assert problem.hint


# ------------------------------------------------------------------ named segments
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

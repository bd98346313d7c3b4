"""The automatic winner of an A/B test (a fixed sample per variant, pairs
compared with Bonferroni's correction) and the per-variant outcomes the
report reads — the decision on simulated outcomes end to end on SQLite and
PostgreSQL, and the outcomes against a plain-Python oracle on random data."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from factories import bulk_customers, loaded_rule
from outreach.domain import Channel, MessageStatus
from outreach.planning import abtest
from outreach.planning.launch import launch
from outreach.rules.variants import AutoWinner
from outreach.store import variants
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message, Order, Rule, VariantDecision
from policy_factories import make_settings
from test_campaign_control import cli

NOW = datetime(2026, 6, 1, 9)


def sample(name: str, n: int, converted: int, revenue: float = 0.0, squares: float = 0.0) -> variants.Sample:
    return variants.Sample(variant=name, n=n, converted=converted, revenue=Decimal(str(revenue)),
                           revenue_squares=Decimal(str(squares)), closes=NOW)


# ------------------------------------------------------------------ the decision rule
def test_a_clear_difference_wins_and_no_difference_does_not() -> None:
    policy = AutoWinner(sample_per_variant=200)
    clear = abtest.decide([sample("a", 200, 10), sample("b", 200, 80)], policy)
    assert clear.winner == "b" and clear.reason.startswith("b has the highest conversion rate")
    same = abtest.decide([sample("a", 200, 40), sample("b", 200, 40)], policy)
    assert same.winner is None and "no variant beats every other one" in same.reason


def test_bonferroni_keeps_three_variants_from_a_winner_two_would_have() -> None:
    # Given b converting 13 % against 10 % for a (and c) on 1,000 sends each: z ≈ 2.1
    policy = AutoWinner(sample_per_variant=1000, confidence=0.95)
    a, b, c = sample("a", 1000, 100), sample("b", 1000, 130), sample("c", 1000, 100)
    # Then with two variants (one comparison at 95 %) b wins
    assert abtest.decide([a, b], policy).winner == "b"
    # But with three (three comparisons, each at 1 − 0.05/3 ≈ 98.3 %) the same difference is not enough
    three = abtest.decide([a, b, c], policy)
    assert three.winner is None and three.confidence_each == pytest.approx(1 - 0.05 / 3)
    assert {(x.better, x.other) for x in three.comparisons} == {
        (p, q) for p in "abc" for q in "abc" if p != q}


def test_revenue_per_send_is_compared_with_welchs_interval() -> None:
    policy = AutoWinner(sample_per_variant=100, metric="revenue")
    # a: 100 sends, revenue 0 or 100 (half each); b: every send 80 exactly
    a = sample("a", 100, 50, revenue=5000, squares=50 * 100**2)
    b = sample("b", 100, 100, revenue=8000, squares=100 * 80**2)
    decided = abtest.decide([a, b], policy)
    # b − a = 30 per send, Welch's standard error √(2525.25/100) ≈ 5.03, df 99: clearly positive
    assert decided.winner == "b"
    [b_over_a] = [x for x in decided.comparisons if x.better == "b"]
    assert b_over_a.estimate == pytest.approx(30) and 19 < b_over_a.low < 21


# ------------------------------------------------------------------ end to end
AB = """
name: birthday-ab
trigger: {type: birthday}
template: birthday
channels: [email]
cooldown_days: 0
attribution_window_days: 7
topic: care
variants:
  - {name: a, weight: 50}
  - {name: b, weight: 50}
winner: {sample_per_variant: 150, confidence: 0.95}
"""


def cohort(engine: Engine, prefix: str, count: int, birthday: date) -> None:
    with transaction(engine) as s:
        bulk_customers(s, count, prefix=prefix, birthday=birthday)


def orders_after(engine: Engine, rates: dict[str, float], at: datetime) -> None:
    """Orders from the customers sent each variant: the first ``rate`` of them (in id order) buy at ``at``."""
    with transaction(engine) as s:
        sent = s.execute(select(Message.customer_id, Message.variant).where(Message.status == MessageStatus.SENT)
                         .order_by(Message.id)).all()
        for variant, rate in rates.items():
            mine = [cid for cid, v in sent if v == variant]
            for cid in mine[:round(len(mine) * rate)]:
                s.add(Order(external_id=f"o-{cid}-{at:%m%d}", customer_id=cid, ordered_at=at, amount=Decimal("60")))


def variants_of_cohort(engine: Engine, prefix: str) -> set[str | None]:
    with Session(engine) as s:
        return set(s.scalars(select(Message.variant).join(Customer, Customer.id == Message.customer_id)
                             .where(Customer.external_id.like(f"{prefix}%"))))


def decision(engine: Engine) -> VariantDecision | None:
    with Session(engine) as s:
        return s.scalar(select(VariantDecision))


def run_test(engine: Engine, db_url: str, tmp_path: Path, rates: dict[str, float]) -> None:
    """Given 500 customers with a birthday on 1 June, sent the A/B rule, and
    ``rates`` of each variant's customers ordering two days later; a second
    cohort on 4 June (before any window closed) and a third on 20 June."""
    settings = make_settings(tmp_path, db_url)
    rule = loaded_rule(AB)
    cohort(engine, "first", 500, date(1990, 6, 1))
    cohort(engine, "early", 100, date(1990, 6, 4))
    cohort(engine, "later", 300, date(1990, 6, 20))
    launch(settings, engine, [rule], now=NOW, simulated=True)
    orders_after(engine, rates, NOW + timedelta(days=2))
    # When the rule runs again on 4 June: the sample's windows are still open, so nothing is decided yet
    launch(settings, engine, [rule], now=datetime(2026, 6, 4, 9), simulated=True)
    assert decision(engine) is None and variants_of_cohort(engine, "early") == {"a", "b"}
    # When it runs on 20 June, after every window of the first 150 sends of each variant closed
    launch(settings, engine, [rule], now=datetime(2026, 6, 20, 9), simulated=True)


def test_a_clear_winner_is_picked_and_the_rest_of_the_audience_gets_it(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given variant b's customers ordering at 40 %, variant a's at 5 %
    run_test(engine, db_url, tmp_path, {"a": 0.05, "b": 0.40})
    # Then b is declared the winner, on 20 June, with the reason and the figures compared
    found = decision(engine)
    assert found is not None and found.winner == "b" and found.decided_at == datetime(2026, 6, 20, 9)
    assert found.reason.startswith("b has the highest conversion rate") and found.results["variants"]["b"][
        "sends"] == 150
    # And every customer of the later cohort gets b
    assert variants_of_cohort(engine, "later") == {"b"}
    assert variants_of_cohort(engine, "first") == {"a", "b"}
    # And campaign status and rules show say so
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "birthday-ab.yaml").write_text(AB)
    status = cli(tmp_path, db_url, "campaign", "status", "birthday-ab")
    assert "winner b (decided 2026-06-20 09:00)" in status.stdout, status.stdout
    shown = cli(tmp_path, db_url, "rules", "show", "rules/birthday-ab.yaml")
    assert "winner: b (decided 2026-06-20 09:00 UTC): b has the highest" in shown.stdout, shown.stdout


def test_no_winner_when_the_variants_do_not_differ(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given both variants' customers ordering at 20 %
    run_test(engine, db_url, tmp_path, {"a": 0.2, "b": 0.2})
    # Then the test ends without a winner, and later customers are still split by the weights
    found = decision(engine)
    assert found is not None and found.winner is None and "no variant beats every other one" in found.reason
    assert variants_of_cohort(engine, "later") == {"a", "b"}


# ------------------------------------------------------------------ outcomes against an oracle
def test_variant_outcomes_agree_with_a_plain_python_oracle(engine: Engine) -> None:
    # Given random messages of two rules (variants, control group, every status) and random orders
    rng = random.Random(12)
    with transaction(engine) as s:
        ids = bulk_customers(s, 120)
        rules = []
        for name in ("ab", "plain"):
            s.add(Rule(name=name, path=f"{name}.yaml", definition={}, checksum="x", updated_at=NOW))
            s.flush()
            rules.append(s.scalars(select(Rule).where(Rule.name == name)).one())
        messages = []
        for cid in ids:
            for rule in rules:
                status = rng.choice(list(MessageStatus))
                held = status is MessageStatus.HELD_OUT
                variant = None if held or rule.name == "plain" else rng.choice(["a", "b", "c"])
                planned = NOW + timedelta(hours=rng.randrange(0, 48))
                sent = planned + timedelta(hours=rng.randrange(0, 5)) if status is MessageStatus.SENT else None
                until = (sent or planned) + timedelta(days=7) if status in (
                    MessageStatus.SENT, MessageStatus.HELD_OUT) else None
                message = Message(rule_id=rule.id, customer_id=cid, channel=Channel.EMAIL, occurrence_key="k",
                                  status=status, planned_at=planned, sent_at=sent, attribute_until=until,
                                  variant=variant)
                s.add(message)
                messages.append((rule.id, rule.name, message))
        orders = [(cid, NOW + timedelta(hours=rng.randrange(-48, 24 * 12)), Decimal(rng.randrange(1, 20000)) / 100)
                  for cid in ids for _ in range(rng.randrange(0, 4))]
        for n, (cid, at, amount) in enumerate(orders):
            s.add(Order(external_id=f"r{n}", customer_id=cid, ordered_at=at, amount=amount))
    as_of = NOW + timedelta(days=5)

    # When the store adds them up
    with Session(engine) as s:
        found = {(o.rule, o.variant, o.held_out): o for o in variants.variant_outcomes(s, now=as_of)}

    # Then each arm is what a plain loop over messages and orders says
    expected: dict[tuple[str, str | None, bool], list[Decimal]] = {}
    for _, name, m in messages:
        key = (name, m.variant, m.status is MessageStatus.HELD_OUT)
        acc = expected.setdefault(key, [Decimal(0)] * 7)
        acc[0] += 1
        acc[1] += m.status is MessageStatus.SENT
        if m.status in (MessageStatus.SENT, MessageStatus.HELD_OUT):
            start = m.sent_at if m.status is MessageStatus.SENT else m.planned_at
            spent = sum((a for c, at, a in orders if c == m.customer_id and start < at <= m.attribute_until),
                        Decimal(0))
            bought = any(c == m.customer_id and start < at <= m.attribute_until for c, at, _ in orders)
            acc[2] += 1
            acc[3] += bought
            acc[4] += spent
            acc[5] += spent * spent
            acc[6] += m.attribute_until > as_of
    assert set(found) == set(expected)
    for key, (assigned, sent, measured, converted, revenue, squares, still_open) in expected.items():
        got = found[key]
        assert (got.assigned, got.sent, got.measured, got.converted, got.open_windows) == (
            assigned, sent, measured, converted, still_open), key
        # (SQLite adds amounts as floating point: equal to a billionth)
        assert float(got.revenue) == pytest.approx(float(revenue), rel=1e-9, abs=1e-9), key
        assert float(got.revenue_squares) == pytest.approx(float(squares), rel=1e-9, abs=1e-9), key


def test_variant_outcomes_leave_the_planner_as_they_found_it(engine: Engine) -> None:
    """On PostgreSQL every message is read in customer order with sorting
    turned off for that one statement; what the caller runs next in the same
    transaction is planned as usual."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the planner setting is PostgreSQL's")
    with transaction(engine) as s:
        variants.variant_outcomes(s, now=NOW)
        assert s.scalar(text("SHOW enable_sort")) == "on"

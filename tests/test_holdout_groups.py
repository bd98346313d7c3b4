"""Control groups independent across rules (a SHA-256 hash of rule and
customer), the same in SQL on both databases as in Python, and the migration
story: a rule that existed keeps its legacy groups until `campaign regroup`
moves it, between experiments.

Statistical tolerances: over N = 100,000 customers a fair 10 % draw holds
10,000 ± 95 (one standard deviation, √(N·0.1·0.9)); two independent 10 %
draws share N·p_A·p_B ≈ 1,000 ± 31 (√(N·0.01·0.99)). Every check allows five
standard deviations: a fair hash falls outside one with probability below
6·10⁻⁷, so the few dozen checks here fail by chance less than once in 10⁵
runs — and the legacy scheme, run through the same checks, fails them.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, and_, case, func, select, text
from sqlalchemy.orm import Session

from factories import bulk_customers, loaded_rule, plan
from outreach.domain import MessageStatus
from outreach.errors import InputError
from outreach.planning.explain import explain
from outreach.planning.preview import preview
from outreach.rules import RuleSet
from outreach.store import campaigns, holdout
from outreach.store.engine import alembic_config, make_engine, migrate, transaction
from outreach.store.models import Customer, Message, Rule
from test_campaign_control import cli

N = 100_000
PERCENT = 10
SIGMAS = 5
#: Pairs of rule names: shipped ones, near-identical ones, one-letter ones.
NAMES = ["winback", "winback-2", "birthday", "vip-lapsing", "a", "b"]
BIRTHDAY = date(1990, 6, 1)


def within(observed: float, expected: float, n: int, p: float) -> bool:
    """``observed`` is within SIGMAS standard deviations of a Binomial(n, p) around ``expected``."""
    return abs(observed - expected) <= SIGMAS * math.sqrt(n * p * (1 - p))


def group_counts(engine: Engine, first: str, second: str, scheme: str) -> tuple[int, int, int]:
    """(held out of ``first``, of ``second``, of both) over every customer, by the
    SQL planning uses."""
    threshold = holdout.holdout_threshold(PERCENT)
    a, b = holdout.bucket(first, scheme) < threshold, holdout.bucket(second, scheme) < threshold
    with Session(engine) as s:
        row = s.execute(select(func.sum(case((a, 1), else_=0)), func.sum(case((b, 1), else_=0)),
                               func.sum(case((and_(a, b), 1), else_=0))).select_from(Customer)).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_control_groups_of_two_rules_share_one_percent_over_100000_customers(engine: Engine) -> None:
    # Given 100,000 customers
    with transaction(engine) as s:
        bulk_customers(s, N, birthday=BIRTHDAY)

    # When the control groups of every pair of rules (10 % each) are drawn
    for first, second in combinations(NAMES, 2):
        held_a, held_b, both = group_counts(engine, first, second, holdout.HASHED)
        # Then each holds 10 % and the two share what independent draws share: 1 %
        assert within(held_a, N * 0.1, N, 0.1) and within(held_b, N * 0.1, N, 0.1), (first, second, held_a, held_b)
        assert within(both, held_a * held_b / N, N, 0.01), (first, second, both)

    # And the legacy scheme, checked the same way, is caught: its groups overlap
    # by what the salts make of them (mostly nothing, sometimes almost all)
    legacy = [group_counts(engine, first, second, holdout.LEGACY) for first, second in combinations(NAMES, 2)]
    assert sum(1 for a, b, both in legacy if not within(both, a * b / N, N, 0.01)) >= len(legacy) // 2


HOLDOUT_RULE = """
name: {name}
trigger: {{type: birthday}}
template: birthday
channels: [email]
cooldown_days: 0
holdout_percent: 10
"""


def held_by_plan(engine: Engine, name: str, now: datetime) -> set[str]:
    _, messages = plan(engine, HOLDOUT_RULE.format(name=name), now)
    return {ext for ext, m in messages.items() if m.status is MessageStatus.HELD_OUT}


def test_the_sql_and_python_agree_for_any_external_id(engine: Engine) -> None:
    # Given customers whose external ids are in other scripts, with colons, long or short
    externals = ["C000123", "客户-0001", "a:b:c", "x", "C" * 120, "ünïcødé", "12345", "with space"]
    externals += [f"K{n:05d}" for n in range(2000)]
    with transaction(engine) as s:
        for ext in externals:
            s.add(Customer(external_id=ext, name="n", created_at=datetime(2024, 1, 1), updated_at=datetime(2024, 1, 1)))
    # When the database computes each customer's bucket and variant for two rules
    with Session(engine) as s:
        for rule_name in ("winback", "vip-lapsing"):
            rows = s.execute(select(Customer.external_id, holdout.bucket(rule_name),
                                    holdout.variant_column(rule_name, [("a", 1), ("b", 2), ("c", 3)]))).all()
            # Then Python computes the same for every one (so every database agrees with every other)
            for ext, bucket, variant in rows:
                assert bucket == holdout.bucket_of(rule_name, ext), ext
                assert variant == holdout.variant_of(rule_name, ext, [("a", 1), ("b", 2), ("c", 3)]), ext


def test_the_scheme_is_pinned_by_known_answers() -> None:
    # A change of the hash would move customers between groups mid-experiment:
    # these values were computed once (hashlib, first 4 bytes of SHA-256 big-endian) and must never change.
    assert holdout.bucket_of("winback", "C1") == 664246653
    assert holdout.bucket_of("winback", "C000123") == 308183366
    assert holdout.bucket_of("birthday", "客户-0001") == 1166445813
    assert holdout.variant_of("winback", "C1", [("a", 1), ("b", 1)]) == "a"  # 824895424 < 2^31
    assert holdout.bucket_of("winback", 123, holdout.LEGACY) == 49074503
    with pytest.raises(TypeError):
        holdout.bucket_of("winback", 123)  # the independent scheme hashes the external id, never the row id


# ------------------------------------------------------------------ the migration story
def _rule_before_0016(engine: Engine, name: str) -> None:
    """A database at 0015 whose ``rules`` has a row for ``name`` (written as
    that schema had it), then upgraded to the newest revision."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0015")
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO rules (name, path, definition, checksum, updated_at, enabled, "
                              "transactional) VALUES (:n, 'rules/x.yaml', '{}', 'old', :t, :yes, :no)"),
                         {"n": name, "t": datetime(2026, 1, 1), "yes": True, "no": False})
    finally:
        migrate(engine)


def test_an_existing_rule_keeps_its_groups_and_regroup_moves_it_between_experiments(engine: Engine) -> None:
    # Given a rule that existed before the upgrade, and 3,000 customers whose birthday it is
    _rule_before_0016(engine, "birthday")
    with transaction(engine) as s:
        ids = bulk_customers(s, 3000, birthday=BIRTHDAY)
        by_id = {row.id: row.external_id for row in s.execute(select(Customer.id, Customer.external_id))}
        assert s.scalar(select(Rule.assignment).where(Rule.name == "birthday")) == holdout.LEGACY
    legacy = {by_id[i] for i in ids if holdout.is_held_out("birthday", i, PERCENT, holdout.LEGACY)}
    hashed = {by_id[i] for i in ids if holdout.is_held_out("birthday", by_id[i], PERCENT)}
    assert legacy != hashed

    # When it is planned after the upgrade: its customers stay in the groups it drew them in
    this_year = datetime(2026, 6, 1, 9)
    assert held_by_plan(engine, "birthday", this_year) == legacy
    # and a rule created now draws independent groups
    assert held_by_plan(engine, "birthday-new", this_year) == {
        by_id[i] for i in ids if holdout.is_held_out("birthday-new", by_id[i], PERCENT)}

    # When it is regrouped while its control group's windows are open, it is refused
    with transaction(engine) as s, pytest.raises(InputError) as refused:
        holdout.regroup(s, s.scalars(select(Rule).where(Rule.name == "birthday")).one(),
                        now=this_year + timedelta(days=3))
    assert "attribution window" in str(refused.value.problems[0]) and "--force" in str(refused.value.problems[0])
    # and explain and preview still use the legacy scheme
    one = by_id[ids[0]]
    rule = loaded_rule(HOLDOUT_RULE.format(name="birthday"))
    next_year = datetime(2027, 6, 1, 9)
    told = explain(engine, rule, customer=one, now=next_year, ruleset=RuleSet())
    assert any(c.label.startswith("holdout 10.0% (legacy") and c.passed == (one not in legacy) for c in told.policy)
    assert preview(engine, rule, now=next_year, ruleset=RuleSet()).held_out == len(legacy)

    # When its last sends are over (here: cancelled) and the windows have closed,
    # regroup moves it, and next year's groups are independent
    with transaction(engine) as s:
        campaigns.cancel(s, "birthday", now=this_year + timedelta(days=30), reason="between experiments")
    with transaction(engine) as s:
        found = s.scalars(select(Rule).where(Rule.name == "birthday")).one()
        assert holdout.regroup(s, found, now=this_year + timedelta(days=30)) == holdout.LEGACY
        assert holdout.regroup(s, found, now=this_year + timedelta(days=30)) == holdout.HASHED  # idempotent
    assert preview(engine, rule, now=next_year, ruleset=RuleSet()).held_out == len(hashed)
    assert held_by_plan(engine, "birthday", next_year) == hashed
    # Then last year's control group is kept as it was recorded
    with Session(engine) as s:
        recorded = set(s.scalars(
            select(Customer.external_id).join(Message, Message.customer_id == Customer.id)
            .join(Rule, Rule.id == Message.rule_id)
            .where(Rule.name == "birthday", Message.status == MessageStatus.HELD_OUT, Message.planned_at == this_year)))
    assert recorded == legacy


def test_campaign_regroup_on_the_command_line(tmp_path: Path, sqlite_url: str) -> None:
    # Given an existing (legacy) rule whose control group was drawn on 1 June
    engine = make_engine(sqlite_url)
    try:
        _rule_before_0016(engine, "birthday")
        with transaction(engine) as s:
            bulk_customers(s, 50, birthday=BIRTHDAY)
        held_by_plan(engine, "birthday", datetime(2026, 6, 1, 9))
        with transaction(engine) as s:
            campaigns.cancel(s, "birthday", now=datetime(2026, 6, 1, 10), reason="ended")
    finally:
        engine.dispose()
    # When it is regrouped while the control group's window is open: refused, with the window's end and a hint
    early = cli(tmp_path, sqlite_url, "campaign", "regroup", "birthday", "--now", "2026-06-03T00:00:00Z")
    assert early.returncode == 1
    assert "inside their attribution window until 2026-06-08 09:00 UTC" in early.stderr, early.stderr
    # When the window has closed: moved, and the status no longer calls it legacy
    done = cli(tmp_path, sqlite_url, "campaign", "regroup", "birthday", "--now", "2026-06-09T00:00:00Z")
    assert done.returncode == 0 and "groups drawn with sha256 from its next plan on (was legacy)" in done.stdout
    status = cli(tmp_path, sqlite_url, "campaign", "status", "birthday", "--format", "json")
    assert json.loads(status.stdout)[0]["assignment"] == "sha256"
    again = cli(tmp_path, sqlite_url, "campaign", "regroup", "birthday")
    assert again.returncode == 0 and "already independent" in again.stdout

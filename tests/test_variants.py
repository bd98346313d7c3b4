"""A/B tests: template variants with weights in the rule language (located
errors), drawn by a hash independent of the control group's, written on
each message at planning, and rendered from the variant's template by the
worker — on SQLite and PostgreSQL.

Tolerances: a variant of weight w among n treated customers gets n·w ± 5
standard deviations (√(n·w·(1−w))); a fair draw falls outside with
probability below 6·10⁻⁷ per check.
"""

from __future__ import annotations

import email
import email.policy
import json
import math
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import add_customer, add_order, bulk_customers, loaded_rule, plan
from outreach.domain import MessageStatus
from outreach.errors import RuleError
from outreach.planning.explain import explain
from outreach.planning.launch import launch
from outreach.planning.preview import preview
from outreach.rules import RuleSet, parse_rule
from outreach.stats import rate_difference
from outreach.store import holdout
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message
from policy_factories import make_settings
from test_campaign_control import cli

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 6, 1, 9)
BIRTHDAY = date(1990, 6, 1)
THREE_WAY = """
name: birthday-ab
trigger: {type: birthday}
template: birthday
channels: [email]
cooldown_days: 0
holdout_percent: 10
variants:
  - {name: a, weight: 20}
  - {name: b, template: birthday, weight: 30}
  - {name: c, weight: 50}
"""
WEIGHTS = [("a", 20.0), ("b", 30.0), ("c", 50.0)]


def within(observed: int, n: int, p: float) -> bool:
    return abs(observed - n * p) <= 5 * math.sqrt(n * p * (1 - p))


# ------------------------------------------------------------------ the language
BASE = """name: ab
trigger: {type: birthday}
template: winback
channels: [email]
"""


def problems(extra: str) -> list[str]:
    with pytest.raises(RuleError) as raised:
        parse_rule(BASE + extra, file="rules/ab.yaml")
    return [str(p) for p in raised.value.problems]


def test_variants_are_read_with_the_rules_template_as_their_default() -> None:
    spec = parse_rule(BASE + "variants:\n  - {name: a}\n  - {name: b, template: winback-b, weight: 3}\n",
                      file="rules/ab.yaml")
    assert spec.weights == [("a", 1.0), ("b", 3.0)]
    assert [spec.template_for(v) for v in ("a", "b", None)] == ["winback", "winback-b", "winback"]
    assert spec.templates == ["winback", "winback-b"]


@pytest.mark.parametrize(("extra", "expected"), [
    ("variants:\n  - {name: a}\n", "rules/ab.yaml, line 5, column 1: variants: an A/B test needs at least two "
     "variants; for one version of the message remove 'variants:' and keep 'template:'"),
    ("variants:\n  - {name: a}\n  - {name: a, template: winback-b}\n", "rules/ab.yaml, line 5, column 1: variants: "
     "the variant name 'a' is used twice (variants.0 and variants.1) (hint: use another name for one of them)"),
    ("variants:\n  - {name: a}\n  - {name: b, tempalte: winback-b}\n",
     "rules/ab.yaml, line 7, column 15: unknown field 'tempalte' (hint: did you mean 'template'?)"),
    ("variants:\n  - {name: a, weight: 0}\n  - {name: b}\n",
     "rules/ab.yaml, line 6, column 15: variants.0.weight: Input should be greater than 0"),
    ("variants:\n  - {name: a}\n  - {name: Big B}\n", "rules/ab.yaml, line 7, column 6: variants.1.name: a variant "
     "name uses lower-case letters, digits, '-' and '_' (e.g. b or short-subject)"),
    ("winner: {sample_per_variant: 500}\n", "rules/ab.yaml, line 5, column 1: winner: an automatic winner needs an "
     "A/B test: add 'variants:' (two or more) or remove 'winner:'"),
    ("variants:\n  - {name: a}\n  - {name: b}\nwinner: {sample_per_variant: 500, metric: revnue}\n",
     "rules/ab.yaml, line 8, column 35: winner.metric: Input should be 'conversion' or 'revenue' "
     "(hint: did you mean 'revenue'?)"),
    ("variants:\n  - {name: a}\n  - {name: b}\nwinner: {sample_per_variant: 10}\n",
     "rules/ab.yaml, line 8, column 10: winner.sample_per_variant: Input should be greater than or equal to 30"),
])
def test_a_mistake_in_variants_is_located_with_a_hint(extra: str, expected: str) -> None:
    assert problems(extra) == [expected]


def test_rules_validate_checks_every_variants_template(tmp_path: Path, sqlite_url: str) -> None:
    # Given a rule whose second variant names a template that does not exist
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ab.yaml").write_text(
        BASE + "variants:\n  - {name: a}\n  - {name: b, template: winback-typo}\n")
    # When the rules are validated
    done = cli(tmp_path, sqlite_url, "rules", "validate", "--no-db")
    # Then the error names the rule file, the line and the variant's field
    assert done.returncode == 1
    assert ("rules/ab.yaml, line 7, field 'variants.1.template': template 'winback-typo' not found"
            in done.stderr.replace(str(tmp_path) + "/", "")), done.stderr


# ------------------------------------------------------------------ planning
def test_weights_are_respected_and_the_held_out_get_no_variant(engine: Engine) -> None:
    # Given 20,000 customers whose birthday it is
    with transaction(engine) as s:
        bulk_customers(s, 20_000, birthday=BIRTHDAY)

    # When a rule with a 10 % control group and variants weighted 20/30/50 is planned
    result, messages = plan(engine, THREE_WAY, NOW)

    # Then every treated customer has the variant Python draws for them, in the weights' proportions
    with Session(engine) as s:
        variants = dict(s.execute(select(Customer.external_id, Message.variant)
                                  .join(Message, Message.customer_id == Customer.id)).all())
    treated = [ext for ext, m in messages.items() if m.status is not MessageStatus.HELD_OUT]
    held = [ext for ext, m in messages.items() if m.status is MessageStatus.HELD_OUT]
    assert len(treated) == result.planned and len(held) == result.held_out > 0
    assert all(variants[ext] == holdout.variant_of("birthday-ab", ext, WEIGHTS) for ext in treated)
    for name, weight in WEIGHTS:
        assert within(sum(1 for ext in treated if variants[ext] == name), len(treated), weight / 100), name
    # and the control group gets none
    assert {variants[ext] for ext in held} == {None}
    # and the variant draw is independent of the control group's: the held out
    # would have been split in the same proportions
    would = [holdout.variant_of("birthday-ab", ext, WEIGHTS) for ext in held]
    for name, weight in WEIGHTS:
        assert within(would.count(name), len(held), weight / 100), name


def test_preview_shows_the_split_and_explain_names_the_variant(engine: Engine) -> None:
    with transaction(engine) as s:
        bulk_customers(s, 400, birthday=BIRTHDAY)
    rule = loaded_rule(THREE_WAY)

    shown = preview(engine, rule, now=NOW, ruleset=RuleSet())
    told = explain(engine, rule, customer="c000007", now=NOW, ruleset=RuleSet())

    expected = [holdout.variant_of("birthday-ab", f"c{n:06d}", WEIGHTS) for n in range(400)
                if not holdout.is_held_out("birthday-ab", f"c{n:06d}", 10)]
    assert shown.by_variant == {name: expected.count(name) for name, _ in WEIGHTS}
    assert sum(shown.by_variant.values()) == shown.would_send
    mine = holdout.variant_of("birthday-ab", "c000007", WEIGHTS)
    if holdout.is_held_out("birthday-ab", "c000007", 10):
        assert "held out" in told.decision
    else:
        assert told.decision.endswith(f"variant {mine}")
        assert any(c.label == "A/B variant" and str(c.value).startswith(mine) for c in told.policy)


# ------------------------------------------------------------------ end to end
AB_WINBACK = """
name: winback-ab
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
holdout_percent: 20
variants:
  - {name: a}
  - {name: b, template: winback-b}
"""


def launch_ab(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """The A/B winback rule launched over 60 lapsed customers with email consent,
    with a copy of the shipped templates and a second winback whose subject differs."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    shutil.copytree(templates / "winback", templates / "winback-b")
    (templates / "winback-b" / "subject.txt").write_text("B: {{ customer.first_name }}, a second look at our tea\n")
    with transaction(engine) as s:
        for n in range(60):
            add_order(s, add_customer(s, f"ab{n:02d}", name=f"Mei {n}"), NOW - timedelta(days=40))
    settings = make_settings(tmp_path, db_url, templates_dir=templates)
    launch(settings, engine, [loaded_rule(AB_WINBACK)], now=NOW, simulated=True)


def test_each_message_is_rendered_from_its_variants_template(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given 60 lapsed customers, when the A/B rule is launched and delivered to the file outbox
    launch_ab(engine, db_url, tmp_path)

    # Then each delivered email carries its variant's subject, and the control group got none
    subjects = {}
    for path in (tmp_path / "outbox" / "email").glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subjects[str(msg["To"]).split("@")[0]] = str(msg["Subject"])
    with Session(engine) as s:
        rows = {ext: (status, variant) for ext, status, variant in s.execute(
            select(Customer.external_id, Message.status, Message.variant)
            .join(Message, Message.customer_id == Customer.id))}
    sent = {ext: variant for ext, (status, variant) in rows.items() if status is MessageStatus.SENT}
    assert set(subjects) == set(sent)
    assert set(sent.values()) == {"a", "b"}
    for ext, variant in sent.items():
        expected = "B: Mei, a second look at our tea" if variant == "b" else "Mei, we saved your favourite tea for you"
        assert subjects[ext] == expected, (ext, variant)
    held = {ext for ext, (status, _) in rows.items() if status is MessageStatus.HELD_OUT}
    assert held and all(rows[ext][1] is None for ext in held)


def test_campaign_status_summarises_each_variant(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given the A/B rule launched, and one of variant b's customers ordering two days later
    launch_ab(engine, db_url, tmp_path)
    with Session(engine) as s:
        buyer = s.scalars(select(Customer.id).join(Message, Message.customer_id == Customer.id)
                          .where(Message.variant == "b").limit(1)).one()
    with transaction(engine) as s:
        add_order(s, s.get_one(Customer, buyer), NOW + timedelta(days=2), 80)
    # When the status is asked for as JSON
    done = cli(tmp_path, db_url, "campaign", "status", "winback-ab", "--format", "json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    # Then it has one entry per variant and one for the control group, with what each did
    arms = {("control" if a["held_out"] else a["variant"]): a for a in row["ab_test"]["variants"]}
    assert set(arms) == {"a", "b", "control"}
    assert arms["a"]["sent"] + arms["b"]["sent"] == row["counts"]["sent"]
    assert arms["control"]["assigned"] == arms["control"]["measured"] == row["counts"]["held_out"]
    assert (arms["b"]["converted"], arms["a"]["converted"], float(arms["b"]["revenue"])) == (1, 0, 80.0)
    # and each variant's lift over the control group, with Newcombe's interval
    lift = rate_difference(1, arms["b"]["measured"], 0, arms["control"]["measured"])
    assert lift is not None and arms["b"]["lift_vs_control"] == pytest.approx(
        {"estimate": lift.estimate, "low": lift.low, "high": lift.high})
    assert arms["control"]["lift_vs_control"] is None
    assert row["ab_test"]["decision"] is None and row["assignment"] == "sha256"
    # and the table says the same in a line
    table = cli(tmp_path, db_url, "campaign", "status", "winback-ab")
    assert "winback-ab A/B: a " in table.stdout and "no decision yet" in table.stdout, table.stdout

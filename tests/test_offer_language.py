"""The offer in the rule language: what it reads as, what a mistake says
(where, and how to fix it), the published schema, and what `rules validate`
checks of a rule's offer and its templates."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from factories import loaded_rule
from offer_helpers import offer_templates
from outreach.errors import RuleError
from outreach.rules import parse_rule
from outreach.rules.checks import pool_conflicts
from outreach.rules.jsonschema import render

REPO = Path(__file__).resolve().parents[1]
OUTREACH = REPO / ".venv" / "bin" / "outreach"
RULE = """name: spring
trigger: {type: inactivity, days: 30}
template: spring
channels: [email]
topic: offers
offer:
  pool: spring15
  discount: 15%
  valid_days: 14
"""


def with_offer(**lines: str) -> str:
    """RULE with the offer's lines replaced (a value of "" drops the line)."""
    text = RULE
    for key, value in lines.items():
        old = next(line for line in text.splitlines() if line.startswith(f"  {key}:"))
        text = text.replace(old + "\n", f"  {value}\n" if value else "")
    return text


@pytest.mark.parametrize("written, discount, terms", [
    ("15%", "15%", (Decimal(15), None, None)),
    ("12.50 %", "12.5%", (Decimal("12.50"), None, None)),
    ("20 cny", "20 CNY", (None, Decimal(20), "CNY")),
    ("19.9 USD", "19.90 USD", (None, Decimal("19.9"), "USD")),
])
def test_a_discount_reads_as_a_percentage_or_an_amount_with_its_currency(
    written: str, discount: str, terms: tuple[Decimal | None, Decimal | None, str | None]
) -> None:
    offer = parse_rule(with_offer(discount=f"discount: {written}"), file="r.yaml").offer
    assert offer is not None and offer.discount == discount
    assert (offer.percent, offer.amount, offer.currency) == terms


def test_a_code_is_good_for_its_days_and_never_past_the_offers_last_day() -> None:
    offer = parse_rule(with_offer(valid_days="valid_days: 14") + "  expires: 2026-06-10\n", file="r.yaml").offer
    assert offer is not None
    assert offer.expires_on(datetime(2026, 6, 1, 9)) == date(2026, 6, 10)
    assert offer.expires_on(datetime(2026, 5, 1, 9)) == date(2026, 5, 15)
    assert not offer.ended(datetime(2026, 6, 10, 23, 59)) and offer.ended(datetime(2026, 6, 11))
    forever = parse_rule(with_offer(valid_days=""), file="r.yaml").offer
    assert forever is not None and forever.expires_on(datetime(2026, 6, 1)) is None


@pytest.mark.parametrize("change, line, column, message, hint", [
    ({"discount": "discount: 15"}, 8, 3, "offer.discount: 15 is not a discount", "use 15% (a percentage off)"),
    ({"discount": "discount: 100%"}, 8, 3, "less than 100%, not 100%", "use an amount (e.g. 20 CNY) for a free gift"),
    ({"discount": "discount: 20 yuan"}, 8, 3, "'20 yuan' is not a discount", "3-letter currency"),
    ({"pool": "pool: Spring 15"}, 7, 3, "'Spring 15' is not a pool name", "use lower-case letters"),
    ({"discount": "discout: 15%"}, 8, 3, "unknown field 'discout'", "did you mean 'discount'?"),
    ({"discount": ""}, 6, 1, "offer.discount: 'discount' is required", "add 'discount:'"),
    ({"valid_days": "valid_days: 0"}, 9, 3, "offer.valid_days: Input should be greater than or equal to 1", None),
])
def test_a_mistake_in_an_offer_is_located_with_a_hint(
    change: dict[str, str], line: int, column: int, message: str, hint: str | None
) -> None:
    with pytest.raises(RuleError) as raised:
        parse_rule(with_offer(**change), file="rules/spring.yaml")
    # (a misspelt field is also a missing one: both are said)
    [problem] = [p for p in raised.value.problems if message in p.message] or raised.value.problems
    assert (problem.file, problem.line, problem.column) == ("rules/spring.yaml", line, column)
    assert message in problem.message, problem
    if hint is not None:
        assert problem.hint and hint in problem.hint, problem


def test_rules_sharing_a_pool_must_give_the_same_discount() -> None:
    a = loaded_rule(RULE, "rules/a.yaml")
    same = loaded_rule(RULE.replace("name: spring", "name: spring-sms"), "rules/b.yaml")
    other = loaded_rule(with_offer(discount="discount: 20 CNY").replace("name: spring", "name: gift"), "rules/c.yaml")
    assert pool_conflicts([a, same]) == []
    [problem] = pool_conflicts([a, same, other])
    assert (problem.file, problem.line) == ("rules/c.yaml", 8)
    assert problem.message == "pool 'spring15' gives 15% in rules/a.yaml, but 20 CNY here"
    assert problem.hint is not None and "a pool of its own" in problem.hint


def test_the_published_schema_describes_offers() -> None:
    published = (REPO / "docs" / "rule.schema.json").read_text()
    assert published == render("rule"), "docs/rule.schema.json is stale: run `outreach rules schema`"
    offer = json.loads(published)["$defs"]["Offer"]
    assert set(offer["properties"]) == {"pool", "discount", "valid_days", "expires"}
    assert offer["required"] == ["pool", "discount"]


# ------------------------------------------------------------------ rules validate
def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["OUTREACH_CONFIG"] = str(folder / "none.toml")
    return subprocess.run([str(OUTREACH), "rules", "validate", "--format", "json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=240)


def project(tmp_path: Path, *rules: str) -> Path:
    offer_templates(tmp_path)
    plain = tmp_path / "templates" / "plain"
    plain.mkdir()
    (plain / "subject.txt").write_text("Hello {{ customer.first_name }}")
    (plain / "email.mjml").write_text("<mjml><mj-body><mj-section><mj-column><mj-text>We miss you."
                                      "</mj-text></mj-column></mj-section></mj-body></mjml>")
    (tmp_path / "rules").mkdir()
    for n, text in enumerate(rules):
        (tmp_path / "rules" / f"r{n}.yaml").write_text(text)
    return tmp_path


def test_validate_renders_an_offer_rule_with_a_sample_code_and_warns_of_an_empty_pool(tmp_path: Path) -> None:
    result = validate(project(tmp_path, RULE))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["errors"] == [], report
    assert [(w["file"], w["line"], w["message"]) for w in report["warnings"]] == [
        ("rules/r0.yaml", 6, "pool 'spring15' has no free coupon code: no message of this rule can be sent")]


def test_validate_says_when_a_rule_without_an_offer_uses_one_or_an_offer_is_never_shown(tmp_path: Path) -> None:
    no_offer = RULE.split("offer:")[0].replace("name: spring", "name: no-offer")
    hidden = RULE.replace("name: spring", "name: hidden").replace("template: spring", "template: plain")
    report = json.loads(validate(project(tmp_path, no_offer, hidden)).stdout)
    [error] = report["errors"]
    assert error["file"].endswith("templates/spring/subject.txt") and error["line"] == 1
    assert error["message"] == ("cannot render: 'offer' is undefined: the rule has no offer, so its messages "
                                "carry no code")
    assert "add 'offer: {pool: …, discount: …}' to the rule" in error["hint"]
    assert [w["message"] for w in report["warnings"] if "never shows" in w["message"]] == [
        "the rule gives every email message a coupon code, but template 'plain' never shows it"]


def test_validate_refuses_two_discounts_for_one_pool(tmp_path: Path) -> None:
    other = with_offer(discount="discount: 10%").replace("name: spring", "name: other")
    result = validate(project(tmp_path, RULE, other))
    assert result.returncode == 1
    assert [e["message"] for e in json.loads(result.stdout)["errors"]] == [
        "pool 'spring15' gives 15% in rules/r0.yaml, but 10% here"]

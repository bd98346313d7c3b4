"""The rule language: good rules parse; every mistake is reported with file,
line, column and a hint a marketer can act on."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from outreach.domain import Channel
from outreach.errors import Problem, RuleError
from outreach.rules import load_rules, parse_rule
from outreach.rules.conditions import AllCondition, NotCondition
from outreach.rules.loader import load_policy, load_segments
from outreach.rules.triggers import DEFAULT_UPSELL_WINDOW_DAYS, InactivityTrigger

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
# Win back lapsed repeat buyers.
name: winback-90
description: Lapsed repeat buyers get 15% off
trigger:
  type: inactivity
  days: 90
segment:
  all:
    - orders: {metric: count, gte: 2}
    - not: {tag: wholesale}
template: winback
channels: [email, sms]
cooldown_days: 60
cost: {email: 0.01, sms: 0.05}
holdout_percent: 10
"""


def problems(text: str, file: str = "winback.yaml") -> list[Problem]:
    with pytest.raises(RuleError) as caught:
        parse_rule(text, file=file)
    return caught.value.problems


def only(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_a_good_rule_parses_into_what_it_says() -> None:
    spec = parse_rule(GOOD, file="winback.yaml")

    assert spec.name == "winback-90"
    assert isinstance(spec.trigger, InactivityTrigger)
    assert spec.trigger.steps == [90]
    assert spec.channels == [Channel.EMAIL, Channel.SMS]  # order = preference
    assert spec.cooldown_days == 60
    assert spec.cost.sms == Decimal("0.05")
    assert spec.holdout_percent == 10
    assert isinstance(spec.segment, AllCondition)
    assert isinstance(spec.segment.all[1], NotCondition)


def test_defaults_a_rule_need_not_spell_out() -> None:
    spec = parse_rule(
        "name: cross\ntrigger:\n  type: cross_sell\n  bought: {category: tea}\n"
        "  never_bought: {sku: TP-1}\ntemplate: t\nchannels: [email]\n",
        file="x.yaml",
    )
    assert spec.cooldown_days == 30
    assert spec.attribution_window_days == 7
    assert spec.holdout_percent == 0
    assert spec.enabled is True
    assert spec.trigger.bought.within_days == DEFAULT_UPSELL_WINDOW_DAYS
    assert spec.trigger.bought.category == ["tea"]  # a single value is a list of one
    assert spec.trigger.never_bought.sku == ["TP-1"]


def test_misspelled_field_suggests_the_right_one() -> None:
    problem = only(GOOD + "cooldwn_days: 30\n")

    assert problem.file == "winback.yaml"
    assert (problem.line, problem.column) == (16, 1)
    assert "cooldwn_days" in problem.message
    assert problem.hint == "did you mean 'cooldown_days'?"
    # What the marketer reads on the terminal:
    assert str(problem).startswith("winback.yaml, line 16, column 1: unknown field 'cooldwn_days'")


def test_misspelled_field_inside_a_trigger_is_located_in_the_trigger() -> None:
    problem = only(
        "name: cross\ntrigger:\n  type: cross_sell\n  bought: {catgory: tea}\n"
        "  never_bought: {category: teaware}\ntemplate: t\nchannels: [email]\n"
    )
    assert (problem.line, problem.column) == (4, 12)
    assert problem.hint == "did you mean 'category'?"


def test_unknown_condition_key_suggests_a_condition() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n"
        "segment:\n  all:\n    - tag: vip\n    - feild: customer_type\n      in: [retail]\n"
    )
    assert (problem.line, problem.column) == (8, 7)
    assert "a condition starts with one of" in problem.message
    assert problem.hint == "did you mean 'field'?"


def test_unknown_comparison_suggests_the_operator() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n"
        "segment:\n  orders: {metric: count, gtee: 2}\n"
    )
    assert (problem.line, problem.column) == (6, 27)
    assert problem.hint == "did you mean 'gte'?"


def test_bad_trigger_type_is_pointed_at_with_a_suggestion() -> None:
    problem = only(
        "name: r\ntrigger:\n  type: inactivty\n  days: 90\ntemplate: t\nchannels: [email]\n"
    )
    assert (problem.line, problem.column) == (3, 3)
    assert "unknown trigger type 'inactivty'" in problem.message
    assert problem.hint == "did you mean 'inactivity'?"


def test_trigger_type_without_a_close_match_lists_the_types() -> None:
    problem = only("name: r\ntrigger: {type: whenever}\ntemplate: t\nchannels: [email]\n")
    assert problem.line == 2
    assert problem.hint is not None
    for kind in ("inactivity", "upsell", "cross_sell", "birthday"):
        assert kind in problem.hint


def test_unknown_channel_is_pointed_at_in_the_list() -> None:
    problem = only("name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email, fax]\n")
    assert (problem.line, problem.column) == (4, 19)
    assert problem.hint is not None and "'email'" in problem.hint and "'sms'" in problem.hint


def test_duplicate_key_points_at_the_second_one() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: a\nchannels: [email]\ntemplate: b\n"
    )
    assert problem.message == "duplicate key 'template'"
    assert (problem.line, problem.column) == (5, 1)
    assert problem.hint


def test_yaml_syntax_error_is_located() -> None:
    problem = only("name: r\ntrigger:\n  type: birthday\n   days_before: 2\ntemplate: t\n")
    assert problem.message.startswith("not valid YAML")
    assert problem.file == "winback.yaml"
    assert problem.line == 4
    assert problem.column is not None
    assert problem.hint and "indentation" in problem.hint


@pytest.mark.parametrize(
    ("text", "line", "column", "field"),
    [
        ("cooldown_days: soon\n", 5, 1, "cooldown_days"),
        ("holdout_percent: 150\n", 5, 1, "holdout_percent"),
        ("enabled: maybe\n", 5, 1, "enabled"),
        ("cost: {email: free}\n", 5, 8, "cost.email"),
    ],
)
def test_wrong_types_are_located_and_named(text: str, line: int, column: int, field: str) -> None:
    problem = only("name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n" + text)
    assert (problem.line, problem.column) == (line, column)
    assert problem.message.startswith(f"{field}:")


def test_a_list_where_a_mapping_belongs_is_reported() -> None:
    problem = only("- name: r\n- template: t\n")
    assert problem.line == 1
    assert "must be a mapping" in problem.message
    assert problem.hint


def test_missing_required_fields_say_what_to_add() -> None:
    found = problems("name: r\ntrigger: {type: birthday}\n")
    hints = {p.hint for p in found}
    assert hints == {"add 'template:'", "add 'channels:'"}


def test_every_problem_of_a_file_is_reported_in_file_order() -> None:
    # Given a rule with four independent mistakes
    text = (
        "name: Win Back\n"  # 1: not a slug
        "trigger: {type: birthday, days_before: -1}\n"  # 2: negative
        "template: t\n"
        "channels: [email, fax]\n"  # 4: unknown channel
        "cooldwn_days: 30\n"  # 5: typo
    )
    # When it is parsed
    found = problems(text)
    # Then each is reported once, with its own line, top to bottom
    assert [p.line for p in found] == [1, 2, 4, 5]
    assert all(p.file == "winback.yaml" for p in found)
    assert "did you mean 'cooldown_days'?" in str(RuleError(found))


def test_error_under_not_points_at_the_wrong_field() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n"
        "segment:\n  not:\n    field: citty\n    eq: x\n"
    )
    assert problem.message.startswith("segment.not.field:")
    assert (problem.line, problem.column) == (7, 5)


@pytest.mark.parametrize(
    "text", ["trigger: {type: inactivity, days: ninety}\n", "cooldown_days: soon\n"]
)
def test_a_type_error_is_one_plain_problem_with_a_hint(text: str) -> None:
    trigger = "" if text.startswith("trigger") else "trigger: {type: birthday}\n"
    problem = only("name: r\ntemplate: t\nchannels: [email]\n" + trigger + text)
    assert "constrained" not in problem.message
    assert problem.hint


def test_unknown_customer_type_is_rejected_when_parsed() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n"
        "segment:\n  field: customer_type\n  in: [retail, wholesale]\n"
    )
    assert "wholesale" in problem.message
    assert problem.line == 7


def test_unquoted_date_in_a_condition_is_one_problem_with_a_hint() -> None:
    problem = only(
        "name: r\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n"
        "segment:\n  field: birthday\n  gt: 1990-01-01\n"
    )
    assert problem.line == 7
    assert problem.hint and "quote" in problem.hint


# ------------------------------------------------------------------ folders
def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_rules_reports_a_rule_name_used_twice(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "name: winback\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n")
    second = write(tmp_path, "b.yaml", "name: winback\ntrigger: {type: birthday}\ntemplate: u\nchannels: [sms]\n")

    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)

    (problem,) = caught.value.problems
    assert problem.file == str(second)
    assert "winback" in problem.message and str(first) in problem.message
    assert problem.hint


def test_load_rules_collects_problems_from_every_file(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", "name: good\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n")
    bad1 = write(tmp_path, "bad1.yaml", "name: bad1\ntrigger: {type: birthday}\ntemplate: t\nchannels: [fax]\n")
    bad2 = write(tmp_path, "bad2.yml", "name: bad2\ntrigger: {type: birthday\n")

    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)

    assert {p.file for p in caught.value.problems} == {str(bad1), str(bad2)}


def test_load_rules_skips_policy_segments_and_underscored_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\ntrigger: {type: birthday}\ntemplate: t\nchannels: [email]\n")
    write(tmp_path, "_draft.yaml", "this is: [not a rule\n")
    write(tmp_path, "policy.yaml", "frequency_cap: {max_messages: 2}\n")
    write(tmp_path, "segments.yaml", "segments:\n  vip: {tag: vip}\n")

    assert [r.spec.name for r in load_rules(tmp_path)] == ["a"]


def test_the_shipped_rules_all_load() -> None:
    folder = REPO / "rules"
    loaded = load_rules(folder)
    # and so do the policy and the named segments next to them
    load_policy(folder)
    segments = load_segments(folder)
    assert segments

    names = {r.spec.name for r in loaded}
    assert {"winback", "birthday", "upsell-teaware"} <= names
    assert len(names) == len(loaded)
    for rule in loaded:
        assert rule.text == rule.path.read_text(encoding="utf-8")


def test_every_trigger_type_and_condition_of_the_language_has_its_sql() -> None:
    # The language (outreach.rules) and its compilers (outreach.store) list the same kinds
    from outreach.rules.conditions import CONDITION_MODELS, AllCondition, AnyCondition, NotCondition, SegmentRef
    from outreach.rules.triggers import TRIGGER_MODELS
    from outreach.store.segments import LEAVES
    from outreach.store.triggers import COMPILERS

    assert set(TRIGGER_MODELS.values()) == set(COMPILERS)
    combining = {AllCondition, AnyCondition, NotCondition, SegmentRef}
    assert set(CONDITION_MODELS.values()) - combining == set(LEAVES)


def test_a_rule_names_its_topic_from_the_vocabulary() -> None:
    assert parse_rule(GOOD + "topic: offers\n", file="w.yaml").topic == "offers"
    assert parse_rule(GOOD, file="w.yaml").topic is None
    problem = only(GOOD + "topic: ofers\n")
    assert problem.line == 16 and "topic" in problem.message and problem.hint == "did you mean 'offers'?"


def test_a_transactional_rule_has_no_topic() -> None:
    problem = only(GOOD + "transactional: true\ntopic: care\n")
    assert problem.line == 17 and "a transactional rule has no topic" in problem.message
    assert parse_rule(GOOD + "transactional: true\n", file="w.yaml").transactional


def test_validate_warns_about_a_marketing_rule_without_a_topic(tmp_path: Path) -> None:
    from outreach.rules import RuleSet
    from outreach.rules.checks import static_warnings

    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("winback-90", "receipt") + "transactional: true\n")
    (tmp_path / "c.yaml").write_text(GOOD.replace("winback-90", "offer") + "topic: offers\n")
    warnings = static_warnings(load_rules(tmp_path), RuleSet())
    assert [(Path(w.file or "").name, w.line) for w in warnings] == [("a.yaml", 2)]
    assert "has no topic" in warnings[0].message and "offers, care, news, feedback" in (warnings[0].hint or "")

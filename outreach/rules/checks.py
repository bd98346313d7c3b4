"""Static checks across the rules of a folder (no database): errors for
references to named segments that rules/segments.yaml does not define, and
warnings for suspicious rules. Checks against today's data are
``outreach.planning.warnings``."""

from __future__ import annotations

from typing import Any

from outreach.domain import Topic
from outreach.errors import Problem, RuleError
from outreach.rules.conditions import SegmentRef, children
from outreach.rules.loader import LoadedRule
from outreach.rules.ruleset import RuleSet
from outreach.rules.triggers import SegmentEntryTrigger
from outreach.rules.yamlpos import load_with_positions, position_of


def _refs(cond: Any) -> list[str]:
    """The named segments ``cond`` refers to (not following them)."""
    if isinstance(cond, SegmentRef):
        return [cond.segment]
    return [ref for child in children(cond) for ref in _refs(child)]


def line_of(loaded: LoadedRule, needle: str) -> int | None:
    for number, line in enumerate(loaded.text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def template_references(loaded: LoadedRule) -> list[tuple[str, str, int | None]]:
    """Every template a rule names, as (template, field, line): its
    ``template:`` and each A/B variant's own ``template:``."""
    spec = loaded.spec
    _, positions = load_with_positions(loaded.text)

    def line(*path: str | int) -> int | None:
        where = position_of(positions, path)
        return where[0] if where else None

    return [(spec.template, "template", line("template")),
            *[(v.template, f"variants.{i}.template", line("variants", i, "template"))
              for i, v in enumerate(spec.variants or ()) if v.template]]


def unknown_segments(loaded: LoadedRule, ruleset: RuleSet) -> list[Problem]:
    spec = loaded.spec
    conditions = [spec.segment]
    if isinstance(spec.trigger, SegmentEntryTrigger):
        conditions.append(spec.trigger.enters)
    known = ", ".join(sorted(ruleset.segments)) or "none"
    return [
        Problem(f"unknown segment '{name}'", file=str(loaded.path), line=line_of(loaded, name),
                hint=f"define it in rules/segments.yaml (known: {known})")
        for name in [r for c in conditions for r in _refs(c)]
        if name not in ruleset.segments
    ]


def require_known_segments(rules: list[LoadedRule], ruleset: RuleSet) -> None:
    """Raise one located RuleError (file, line, hint) for every reference to a
    named segment that rules/segments.yaml does not define — before evaluating."""
    problems = [p for loaded in rules for p in unknown_segments(loaded, ruleset)]
    if problems:
        raise RuleError(problems)


def pool_conflicts(rules: list[LoadedRule]) -> list[Problem]:
    """Rules that share a pool of coupon codes must give the same discount:
    the shop's codes each carry one."""
    first: dict[str, LoadedRule] = {}
    problems: list[Problem] = []
    for loaded in rules:
        offer = loaded.spec.offer
        if offer is None:
            continue
        seen = first.setdefault(offer.pool, loaded)
        other = seen.spec.offer
        if other is not None and other.discount != offer.discount:
            problems.append(Problem(
                f"pool '{offer.pool}' gives {other.discount} in {seen.path}, but {offer.discount} here",
                file=str(loaded.path), line=line_of(loaded, "discount"),
                hint="a pool's codes carry one discount: state the same one, or give this rule a pool of its own",
            ))
    return problems


def static_warnings(rules: list[LoadedRule], ruleset: RuleSet) -> list[Problem]:
    """Suspicious rules that need no data to spot: a cooldown shorter than
    the frequency-cap window (the cap, not the cooldown, will decide); a
    marketing rule without a topic (no topic a customer turns off stops it)."""
    warnings: list[Problem] = []
    cap = ruleset.policy.frequency_cap if ruleset.policy else None
    for loaded in rules:
        spec = loaded.spec
        if cap and (cap.max_messages or cap.per_channel) and 0 < spec.cooldown_days < cap.days:
            warnings.append(Problem(
                f"cooldown_days {spec.cooldown_days} is shorter than the frequency-cap window "
                f"({cap.days} days): the cap, not the cooldown, will limit this rule",
                file=str(loaded.path), line=line_of(loaded, "cooldown_days"), severity="warning",
                hint="raise cooldown_days or accept that the cap decides",
            ))
        if spec.topic is None and not spec.transactional:
            warnings.append(Problem(
                f"rule '{spec.name}' has no topic: a customer who turns off every topic on their preference "
                "page still gets it (only a pause or turning the channel off stops it)",
                file=str(loaded.path), line=line_of(loaded, "name:"), severity="warning",
                hint="add 'topic:' with one of " + ", ".join(t.value for t in Topic),
            ))
    return warnings

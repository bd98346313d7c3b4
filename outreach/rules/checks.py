"""Checks across rules for ``rules validate``: errors (unknown named segments)
and warnings (suspicious rules: a segment that matches nobody today, a
cooldown shorter than the frequency-cap window)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach.errors import Problem, RuleError
from outreach.store.models import Customer
from outreach.rules import LoadedRule, schema


def _refs(cond: Any) -> list[str]:
    if isinstance(cond, schema.SegmentRef):
        return [cond.segment]
    if isinstance(cond, schema.AllCondition):
        return [r for c in cond.all for r in _refs(c)]
    if isinstance(cond, schema.AnyCondition):
        return [r for c in cond.any for r in _refs(c)]
    if isinstance(cond, schema.NotCondition):
        return _refs(cond.not_)
    return []


def _line_of(loaded: LoadedRule, needle: str) -> int | None:
    for number, line in enumerate(loaded.text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _unknown_segments(loaded: LoadedRule, ruleset: Any) -> list[Problem]:
    spec = loaded.spec
    conditions = [spec.segment]
    if isinstance(spec.trigger, schema.SegmentEntryTrigger):
        conditions.append(spec.trigger.enters)
    known = ", ".join(sorted(ruleset.segments)) or "none"
    return [
        Problem(f"unknown segment '{name}'", file=str(loaded.path), line=_line_of(loaded, name),
                hint=f"define it in rules/segments.yaml (known: {known})")
        for name in [r for c in conditions for r in _refs(c)]
        if name not in ruleset.segments
    ]


def require_known_segments(rules: list[LoadedRule], ruleset: Any) -> None:
    """Raise one located RuleError (file, line, hint) for every reference to a
    named segment that rules/segments.yaml does not define — before evaluating."""
    problems = [p for loaded in rules for p in _unknown_segments(loaded, ruleset)]
    if problems:
        raise RuleError(problems)


def check_rules(
    rules: list[LoadedRule], ruleset: Any, *, engine: Engine | None, now: datetime
) -> tuple[list[Problem], list[Problem]]:
    from outreach.planning.launch import prepare
    from outreach.store.segments import compile_condition

    errors: list[Problem] = []
    warnings: list[Problem] = []
    cap = ruleset.policy.frequency_cap if ruleset.policy else None
    for loaded in rules:
        spec, file = loaded.spec, str(loaded.path)
        errors += _unknown_segments(loaded, ruleset)
        if cap and (cap.max_messages or cap.per_channel) and 0 < spec.cooldown_days < cap.days:
            warnings.append(Problem(
                f"cooldown_days {spec.cooldown_days} is shorter than the frequency-cap window "
                f"({cap.days} days): the cap, not the cooldown, will limit this rule",
                file=file, line=_line_of(loaded, "cooldown_days"), severity="warning",
                hint="raise cooldown_days or accept that the cap decides",
            ))
    if engine is None or errors:
        return errors, warnings
    with Session(engine) as session, session.begin():
        total = session.scalar(select(func.count(Customer.id))) or 0
        if total:
            prepare(session, [r.spec for r in rules if r.spec.segment is not None], now=now, ruleset=ruleset)
            for loaded in rules:
                if loaded.spec.segment is None:
                    continue
                try:
                    matched = session.scalar(
                        select(func.count(Customer.id)).where(
                            compile_condition(loaded.spec.segment, now, segments=ruleset.segments))
                    )
                except RuleError:
                    continue
                if not matched:
                    warnings.append(Problem(
                        f"the segment matches none of the {total} customers today",
                        file=str(loaded.path), line=_line_of(loaded, "segment:"), severity="warning",
                        hint="check the values against your data with `outreach rules preview`",
                    ))
        session.rollback()
    return errors, warnings

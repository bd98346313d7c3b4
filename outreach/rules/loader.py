"""Read rule files and report every problem with file, line, column and a hint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from outreach.errors import Problem, RuleError
from outreach.rules.policy import Policy
from outreach.rules.problems import problems_from
from outreach.rules.spec import RuleSpec, SegmentsFile
from outreach.rules.yamlpos import DuplicateKey, load_with_positions

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedRule:
    spec: RuleSpec
    path: Path
    text: str


def parse_rule(text: str, *, file: str) -> RuleSpec:
    """Parse and validate one rule; raise ``RuleError`` listing every problem."""
    return _parse(text, file=file, model=RuleSpec, what="a rule file must be a mapping "
                  "(name:, trigger:, template:, channels: …)")


def _parse(text: str, *, file: str, model: type[M], what: str) -> M:
    try:
        data, positions = load_with_positions(text)
    except DuplicateKey as exc:
        raise RuleError.single(
            str(exc), file=file, line=exc.line, column=exc.column, hint="remove one of the two"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RuleError.single(
            f"not valid YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="check indentation and that every 'key: value' has a space after the colon",
        ) from None
    if not isinstance(data, dict):
        raise RuleError.single(what, file=file, line=1, hint="see docs/rules.md for a complete example")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RuleError(problems_from(exc, file, data, positions)) from None


def load_rule(path: Path) -> LoadedRule:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError.single(
            "rule file not found", file=str(path),
            hint=f"no such file or folder (relative paths start at {Path.cwd()}); run from the project "
                 "folder that holds rules/, or point OUTREACH_RULES_DIR at it",
        ) from None
    return LoadedRule(parse_rule(text, file=str(path)), path, text)


#: Files in the rules folder that are not rules.
POLICY_FILE = "policy.yaml"
SEGMENTS_FILE = "segments.yaml"
CURRENCY_FILE = "currency.yaml"


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in [*path.glob("*.yaml"), *path.glob("*.yml")]
            if not p.name.startswith("_") and p.name not in (POLICY_FILE, SEGMENTS_FILE, CURRENCY_FILE)
        )
    return [path]


def rules_folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def parse_file(file: Path, *, model: type[M], what: str) -> M:
    """One YAML file of the rules folder, validated by ``model``; RuleError with every problem's place."""
    return _parse(file.read_text(encoding="utf-8"), file=str(file), model=model, what=what)


def load_policy(folder: Path) -> Policy:
    """rules/policy.yaml, or the defaults (SMS 09:00–21:00, no cap) without one."""
    file = folder / POLICY_FILE
    if not file.is_file():
        return Policy()
    return _parse(file.read_text(encoding="utf-8"), file=str(file), model=Policy,
                  what="policy.yaml must be a mapping (frequency_cap:, send_windows:, lifecycle:)")


def load_segments(folder: Path) -> dict[str, Any]:
    """Named segments from rules/segments.yaml (empty without one)."""
    file = folder / SEGMENTS_FILE
    if not file.is_file():
        return {}
    parsed = _parse(file.read_text(encoding="utf-8"), file=str(file), model=SegmentsFile,
                    what="segments.yaml must be a mapping with a 'segments:' key")
    return dict(parsed.segments)


def load_rules(path: Path) -> list[LoadedRule]:
    """Load every rule under ``path``; collect all problems before raising."""
    loaded: list[LoadedRule] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for file in rule_files(path):
        try:
            rule = load_rule(file)
        except RuleError as exc:
            problems.extend(exc.problems)
            continue
        if rule.spec.name in seen:
            problems.append(
                Problem(
                    f"rule name '{rule.spec.name}' is also used by {seen[rule.spec.name]}",
                    file=str(file),
                    line=1,
                    hint="rule names must be unique",
                )
            )
        seen[rule.spec.name] = file
        loaded.append(rule)
    if problems:
        raise RuleError(problems)
    return loaded

"""Read rule files and report every problem with file, line, column and a hint."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from outreach.errors import Problem, RuleError
from outreach.rules import schema
from outreach.rules.yamlpos import DuplicateKey, load_with_positions, position_of


@dataclass(frozen=True)
class LoadedRule:
    spec: schema.RuleSpec
    path: Path
    text: str


def _model_at(path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """Which model the value at ``path`` is validated against (for hints)."""
    model: type[BaseModel] | None = schema.RuleSpec
    value = data
    for index, key in enumerate(path):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
        if key == "trigger" and index == 0:
            kind = value.get("type") if isinstance(value, dict) else None
            model = {
                "inactivity": schema.InactivityTrigger,
                "upsell": schema.UpsellTrigger,
                "cross_sell": schema.UpsellTrigger,
                "birthday": schema.BirthdayTrigger,
                "anniversary": schema.AnniversaryTrigger,
                "event": schema.EventTrigger,
                "lifecycle": schema.LifecycleTrigger,
                "segment_entry": schema.SegmentEntryTrigger,
            }.get(kind)  # type: ignore[arg-type]
        elif key == "bought":
            model = schema.UpsellProducts if index == 1 else schema.WindowedProducts
        elif key == "stats":
            model = schema.StatsFilter
        elif key in ("send_window",):
            model = schema.SendWindow
        elif key == "frequency_cap":
            model = schema.FrequencyCap
        elif key == "lifecycle" and index == 0:
            model = schema.LifecyclePolicy
        elif key == "never_bought":
            model = schema.ProductMatch
        elif key == "orders":
            model = schema.OrdersAggregate
        elif key == "cost":
            model = schema.ChannelCosts
        elif isinstance(value, dict) and key in ("segment", "not", "enters") or isinstance(key, int) or (
            index == 1 and path[0] == "segments"
        ):
            kind = schema._condition_kind(value)
            model = schema.CONDITION_MODELS.get(kind) if kind else None
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _hint_for(error: dict[str, Any], data: Any) -> str | None:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and loc:
        model = _model_at(loc[:-1], data)
        if model is not None:
            names = _field_names(model)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            if close:
                return f"did you mean '{close[0]}'?"
            return f"allowed here: {', '.join(names)}"
    if kind == "unknown_condition":
        value = data
        for key in loc:
            value = value[key] if isinstance(value, (dict, list)) else None
        if isinstance(value, dict) and value:
            first = str(next(iter(value)))
            close = difflib.get_close_matches(first, list(schema.CONDITION_KEYS), n=1, cutoff=0.5)
            if close:
                return f"did you mean '{close[0]}'?"
    if kind == "union_tag_invalid" and loc[:1] == ("trigger",):
        given = str(error.get("ctx", {}).get("tag", ""))
        close = difflib.get_close_matches(given, schema.TRIGGER_TYPES, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
        return "trigger types: " + ", ".join(schema.TRIGGER_TYPES)
    if kind in ("literal_error", "enum"):
        return f"allowed: {error.get('ctx', {}).get('expected', '')}".strip()
    if kind == "missing":
        return f"add '{loc[-1]}:'"
    return None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union tags ('field', 'inactivity', …) from a location."""
    cleaned: list[Any] = []
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        if isinstance(part, str) and (
            (prev in ("segment", "not", "enters") or isinstance(prev, int)
             or (i == 2 and loc[0] == "segments"))
            and part in schema.CONDITION_KEYS
            or prev == "trigger" and part in schema.TRIGGER_TYPES
        ):
            continue
        cleaned.append(part)
    # Aliases: in_ → in, not_ → not.
    return tuple({"in_": "in", "not_": "not"}.get(p, p) if isinstance(p, str) else p for p in cleaned)


def _problems_from(exc: ValidationError, file: str, data: Any, positions: dict) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = _clean_loc(tuple(error["loc"]))
        if error["type"] == "union_tag_invalid" and loc == ("trigger",):
            loc = ("trigger", "type")
        error = {**error, "loc": loc}
        pos = position_of(positions, loc)
        message = error["msg"].removeprefix("Value error, ")
        dotted = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'"
        elif error["type"] == "union_tag_invalid":
            message = f"{dotted}: unknown trigger type '{error.get('ctx', {}).get('tag', '')}'"
            dotted = ""
        elif error["type"] == "missing":
            message = f"'{loc[-1]}' is required"
        problems.append(
            Problem(
                f"{dotted}: {message}" if dotted and error["type"] != "extra_forbidden" else message,
                file=file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                hint=_hint_for(error, data),
            )
        )
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def parse_rule(text: str, *, file: str) -> schema.RuleSpec:
    """Parse and validate one rule; raise ``RuleError`` listing every problem."""
    return _parse(text, file=file, model=schema.RuleSpec, what="a rule file must be a mapping "
                  "(name:, trigger:, template:, channels: …)")


def _parse(text: str, *, file: str, model: type[BaseModel], what: str) -> Any:
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
        raise RuleError(_problems_from(exc, file, data, positions)) from None


def load_rule(path: Path) -> LoadedRule:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError.single("rule file not found", file=str(path)) from None
    return LoadedRule(parse_rule(text, file=str(path)), path, text)


#: Files in the rules folder that are not rules.
POLICY_FILE = "policy.yaml"
SEGMENTS_FILE = "segments.yaml"


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in [*path.glob("*.yaml"), *path.glob("*.yml")]
            if not p.name.startswith("_") and p.name not in (POLICY_FILE, SEGMENTS_FILE)
        )
    return [path]


def rules_folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def load_policy(folder: Path) -> schema.Policy:
    """rules/policy.yaml, or the defaults (SMS 09:00–21:00, no cap) without one."""
    file = folder / POLICY_FILE
    if not file.is_file():
        return schema.Policy()
    return _parse(file.read_text(encoding="utf-8"), file=str(file), model=schema.Policy,
                  what="policy.yaml must be a mapping (frequency_cap:, send_windows:, lifecycle:)")


def load_segments(folder: Path) -> dict[str, Any]:
    """Named segments from rules/segments.yaml (empty without one)."""
    file = folder / SEGMENTS_FILE
    if not file.is_file():
        return {}
    parsed = _parse(file.read_text(encoding="utf-8"), file=str(file), model=schema.SegmentsFile,
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

"""Read rule files and report every problem with file, line, column and a hint."""

from __future__ import annotations

import difflib
import re
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
    if kind == "plain_type":
        return error["hint"]
    return None


#: Labels pydantic puts in a location for the member of a union it tried.
_UNION_LABELS = re.compile(r"^(str|int|float|bool|date|datetime|decimal|constrained-\w+|list\[.*\]|dict\[.*\])$")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn pydantic's location into the path a marketer wrote: drop the union
    tags of conditions and triggers and the labels of union members."""
    cleaned: list[Any] = []
    expect_condition = False
    for part in loc:
        if expect_condition and isinstance(part, str) and part in schema.CONDITION_KEYS:
            expect_condition = False  # the tag pydantic adds; the real key follows
            continue
        if isinstance(part, str) and _UNION_LABELS.match(part):
            continue
        if cleaned == ["trigger"] and part in schema.TRIGGER_TYPES and len(loc) > 2:
            cleaned.append("\0tag")  # placeholder: a trigger tag, dropped below
            continue
        cleaned.append(part)
        top = [c for c in cleaned if c != "\0tag"]
        expect_condition = (
            (len(top) == 1 and part == "segment")
            or (top[:1] == ["trigger"] and part == "enters")
            or (isinstance(part, int) and len(top) >= 2 and top[-2] in ("all", "any"))
            or part in ("not", "not_")
            or (len(top) == 2 and top[0] == "segments")
        )
    path = tuple(c for c in cleaned if c != "\0tag")
    # Aliases: in_ → in, not_ → not.
    return tuple({"in_": "in", "not_": "not"}.get(p, p) if isinstance(p, str) else p for p in path)


#: What to write instead, by pydantic error type.
_TYPE_HINTS = {
    "int_parsing": "a whole number, e.g. 30",
    "int_type": "a whole number, e.g. 30",
    "float_parsing": "a number, e.g. 12.5",
    "float_type": "a number, e.g. 12.5",
    "decimal_parsing": "a number, e.g. 0.05",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list, e.g. [email, sms]",
    "dict_type": "a mapping (key: value lines)",
}


def _merge_type_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One problem per location: a value that fits no member of a union is one
    mistake, not one per member."""
    by_loc: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        by_loc.setdefault(_clean_loc(tuple(error["loc"])), []).append(error)
    merged = []
    for loc, group in by_loc.items():
        typed = [e for e in group if e["type"] in _TYPE_HINTS or e["type"] in ("date_type", "datetime_type")]
        if len(group) > 1 and len(typed) == len(group) or (len(group) == 1 and typed):
            value = group[0].get("input")
            wanted = sorted({_TYPE_HINTS.get(e["type"], "text") for e in group})
            hint = "expected " + " or ".join(wanted)
            if hasattr(value, "isoformat"):
                hint = f"put dates in quotes, e.g. '{value.isoformat()}'"
            merged.append({**group[0], "loc": loc, "type": "plain_type",
                           "msg": f"{value!r} is not valid here", "hint": hint})
        else:
            merged.extend({**e, "loc": loc} for e in group)
    return merged


def _problems_from(exc: ValidationError, file: str, data: Any, positions: dict) -> list[Problem]:
    problems = []
    for error in _merge_type_errors(exc.errors()):
        loc = tuple(error["loc"])
        if error["type"] == "union_tag_invalid" and loc == ("trigger",):
            loc = ("trigger", "type")
        error = {**error, "loc": loc}
        pos = position_of(positions, loc)
        if "unknown customer type" in error["msg"]:
            # Raised for the whole condition; point at the operator that holds the value.
            pos = next((positions[(*loc, op)] for op in ("in", "eq", "ne", "not_in")
                        if (*loc, op) in positions), pos)
        message = error["msg"].removeprefix("Value error, ")
        dotted = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'"
        elif error["type"] == "union_tag_invalid":
            message = f"{dotted}: unknown trigger type '{error.get('ctx', {}).get('tag', '')}'"
            dotted = ""
        elif error["type"] == "missing":
            message = f"'{loc[-1]}' is required"
        hint = _hint_for(error, data)
        if hint is None and "; use " in message:
            # Our validators say "what is wrong; use <the allowed values>".
            message, allowed = message.split("; use ", 1)
            hint = f"use {allowed}"
        problems.append(
            Problem(
                f"{dotted}: {message}" if dotted and error["type"] != "extra_forbidden" else message,
                file=file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                hint=hint,
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
        raise RuleError.single(
            "rule file not found", file=str(path),
            hint=f"no such file or folder (relative paths start at {Path.cwd()}); run from the project "
                 "folder that holds rules/, or point OUTREACH_RULES_DIR at it",
        ) from None
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

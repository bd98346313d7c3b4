"""Pydantic's validation errors → problems a marketer can act on.

Each error becomes one :class:`~outreach.errors.Problem` at the line and
column the value came from, in the words of the rule file (``segment.all.2``
not pydantic's union tags), with a hint: the field name meant, the allowed
values, the type expected.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from outreach.errors import Problem
from outreach.rules.conditions import (
    CONDITION_KEYS,
    CONDITION_MODELS,
    OrdersAggregate,
    ProductMatch,
    StatsFilter,
    WindowedProducts,
    condition_kind,
)
from outreach.rules.offers import Offer
from outreach.rules.policy import FrequencyCap, LifecyclePolicy, SendWindow
from outreach.rules.spec import ChannelCosts, RuleSpec
from outreach.rules.triggers import TRIGGER_MODELS, TRIGGER_TYPES, UpsellProducts
from outreach.rules.variants import AutoWinner, Variant
from outreach.rules.yamlpos import Positions, position_of


def _model_at(path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """Which model the value at ``path`` is validated against (for hints)."""
    model: type[BaseModel] | None = RuleSpec
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
            model = TRIGGER_MODELS.get(kind) if isinstance(kind, str) else None
        elif key == "bought":
            model = UpsellProducts if index == 1 else WindowedProducts
        elif key == "stats":
            model = StatsFilter
        elif key in ("send_window",):
            model = SendWindow
        elif key == "frequency_cap":
            model = FrequencyCap
        elif key == "lifecycle" and index == 0:
            model = LifecyclePolicy
        elif key == "never_bought":
            model = ProductMatch
        elif key == "orders":
            model = OrdersAggregate
        elif key == "cost":
            model = ChannelCosts
        elif key == "winner" and index == 0:
            model = AutoWinner
        elif isinstance(key, int) and path[:1] == ("variants",) and index == 1:
            model = Variant
        elif key == "offer" and index == 0:
            model = Offer
        elif (isinstance(value, dict) and key in ("segment", "not", "enters")) or isinstance(key, int) or (
            index == 1 and path[0] == "segments"
        ):
            kind = condition_kind(value)
            model = CONDITION_MODELS.get(kind) if kind else None
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
            close = difflib.get_close_matches(first, list(CONDITION_KEYS), n=1, cutoff=0.5)
            if close:
                return f"did you mean '{close[0]}'?"
    if kind == "union_tag_invalid" and loc[:1] == ("trigger",):
        given = str(error.get("ctx", {}).get("tag", ""))
        close = difflib.get_close_matches(given, TRIGGER_TYPES, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
        return "trigger types: " + ", ".join(TRIGGER_TYPES)
    if kind in ("literal_error", "enum"):
        expected = str(error.get("ctx", {}).get("expected", ""))
        close = difflib.get_close_matches(str(error.get("input", "")), re.findall(r"'([^']*)'", expected),
                                          n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
        return f"allowed: {expected}".strip()
    if kind == "missing":
        return f"add '{loc[-1]}:'"
    if kind == "plain_type":
        return str(error["hint"])
    return None


#: Labels pydantic puts in a location for the member of a union it tried.
_UNION_LABELS = re.compile(r"^(str|int|float|bool|date|datetime|decimal|constrained-\w+|list\[.*\]|dict\[.*\])$")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn pydantic's location into the path a marketer wrote: drop the union
    tags of conditions and triggers and the labels of union members."""
    cleaned: list[Any] = []
    expect_condition = False
    for part in loc:
        if expect_condition and isinstance(part, str) and part in CONDITION_KEYS:
            expect_condition = False  # the tag pydantic adds; the real key follows
            continue
        if isinstance(part, str) and _UNION_LABELS.match(part):
            continue
        if cleaned == ["trigger"] and part in TRIGGER_TYPES and len(loc) > 2:
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
        if (len(group) > 1 and len(typed) == len(group)) or (len(group) == 1 and typed):
            value = group[0].get("input")
            wanted = sorted({_TYPE_HINTS.get(e["type"], "text") for e in group})
            hint = "expected " + " or ".join(wanted)
            if isinstance(value, (date, datetime)):
                hint = f"put dates in quotes, e.g. '{value.isoformat()}'"
            merged.append({**group[0], "loc": loc, "type": "plain_type",
                           "msg": f"{value!r} is not valid here", "hint": hint})
        else:
            merged.extend({**e, "loc": loc} for e in group)
    return merged


def problems_from(exc: ValidationError, file: str, data: Any, positions: Positions) -> list[Problem]:
    """Every validation error of ``data`` (read from ``file``) as a located problem."""
    problems = []
    for error in _merge_type_errors([dict(e) for e in exc.errors()]):
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



"""Portable SQL helpers whose text differs by dialect."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from outreach.clock import zone_or_utc

#: What counts as a number inside a text attribute (same rule in Python and SQL).
NUMERIC_TEXT = re.compile(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")


def numeric_or_none(value: Any) -> float | None:
    """Python statement of ``numeric_text``: the number a text holds, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and NUMERIC_TEXT.match(value):
        return float(value)
    return None


class numeric_text(FunctionElement[float]):
    """The number held by a text expression, or NULL when it is not a number
    (never an error, unlike a plain CAST on PostgreSQL)."""

    type = Float()
    inherit_cache = True
    name = "numeric_text"


@compiles(numeric_text, "postgresql")
def _pg(element: numeric_text, compiler: Any, **kw: Any) -> str:
    expr = compiler.process(list(element.clauses)[0], **kw)
    return (
        f"(CASE WHEN ({expr}) ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' "
        f"THEN CAST(({expr}) AS DOUBLE PRECISION) END)"
    )


@compiles(numeric_text, "sqlite")
def _sqlite(element: numeric_text, compiler: Any, **kw: Any) -> str:
    expr = compiler.process(list(element.clauses)[0], **kw)
    body = f"(CASE WHEN substr(trim({expr}), 1, 1) = '-' THEN substr(trim({expr}), 2) ELSE trim({expr}) END)"
    return (
        f"(CASE WHEN typeof({expr}) IN ('integer', 'real') THEN ({expr}) "
        f"WHEN {body} GLOB '[0-9]*' AND {body} GLOB '*[0-9]' "
        f"AND NOT {body} GLOB '*[^0-9.]*' AND NOT {body} GLOB '*.*.*' "
        f"THEN CAST(trim({expr}) AS REAL) END)"
    )


class json_number(FunctionElement[float]):
    """A JSON member (``column[key]``) as a number: a JSON number as itself, a
    JSON string through :class:`numeric_text`, anything else (true/false,
    arrays, objects, null) NULL — the same on every database."""

    type = Float()
    inherit_cache = True
    name = "json_number"


@compiles(json_number, "postgresql")
def _pg_json(element: json_number, compiler: Any, **kw: Any) -> str:
    # ->> gives 'true'/'false' for booleans, which numeric_text rejects.
    return compiler.process(numeric_text(list(element.clauses)[0].as_string()), **kw)


@compiles(json_number, "sqlite")
def _sqlite_json(element: json_number, compiler: Any, **kw: Any) -> str:
    # JSON_EXTRACT reads true as the integer 1: ask json_type() what it is.
    member = list(element.clauses)[0]
    key = member.right.value
    path = f'$[{int(key)}]' if isinstance(key, int) else '$."' + str(key).replace('"', '\\"') + '"'
    kind = compiler.process(func.json_type(member.left, literal(path)), **kw)
    extracted = compiler.process(func.json_extract(member.left, literal(path)), **kw)
    as_text = compiler.process(numeric_text(member.as_string()), **kw)
    return (
        f"(CASE {kind} WHEN 'integer' THEN {extracted} WHEN 'real' THEN {extracted} "
        f"WHEN 'text' THEN {as_text} END)"
    )


class local_time(FunctionElement[Any]):
    """A naive-UTC timestamp as wall-clock time in a time zone (an IANA name
    expression): ``local_time(Customer.created_at, zone)``. PostgreSQL uses
    its own time zone database; SQLite calls :func:`sqlite_local_time`,
    registered on every connection by ``db.make_engine``. Both follow the
    zone's offset history (daylight saving included)."""

    type = DateTime()
    inherit_cache = True
    name = "local_time"


@compiles(local_time, "postgresql")
def _pg_local(element: local_time, compiler: Any, **kw: Any) -> str:
    ts, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({ts}) AT TIME ZONE 'UTC' AT TIME ZONE ({zone}))"


@compiles(local_time, "sqlite")
def _sqlite_local(element: local_time, compiler: Any, **kw: Any) -> str:
    ts, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"outreach_local_time({ts}, {zone})"


def sqlite_local_time(value: str | None, zone: str | None) -> str | None:
    """SQLite function ``outreach_local_time(ts, zone)``: the stored naive-UTC
    text timestamp as local wall time, in the same text format (an unknown
    zone reads as UTC, as everywhere else)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC).astimezone(zone_or_utc(zone or "UTC"))
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

"""Portable SQL helpers whose text differs by dialect."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

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


def as_number(expr: ColumnElement[Any]) -> ColumnElement[float]:
    return numeric_text(expr)

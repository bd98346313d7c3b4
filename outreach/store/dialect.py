"""Everything that differs between PostgreSQL and SQLite, in one place.

The rest of the store writes portable SQLAlchemy and asks this module when
the two databases need different SQL:

* :func:`insert` — the dialect's ``INSERT`` with ``ON CONFLICT`` (upserts,
  idempotent writes); :func:`among` — a column among many ids;
* :func:`tune_session`, :func:`has_lateral`, :func:`materialize`,
  :func:`load_temporary`, :func:`empty_for_reload` / :func:`restore_after_reload`
  — how large set-based statements are run on each;
* SQL functions compiled per dialect: :class:`numeric_text`,
  :class:`json_number`, :class:`local_time`, :class:`hash32` (SQLite gets
  Python functions registered on every connection by ``engine.make_engine``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Float,
    MetaData,
    Select,
    String,
    Table,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlalchemy import insert as portable_insert
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.ddl import CreateTableAs
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import NullType

from outreach.clock import zone_or_utc
from outreach.errors import ConfigError

#: The databases Outreach runs on.
SUPPORTED = ("postgresql", "sqlite")
#: Memory PostgreSQL may use per sort/hash in planning transactions, so the
#: set-based statements over millions of rows do not spill to disk.
PLANNING_WORK_MEM = "256MB"

Bind = Session | Connection | Engine


def name_of(bind: Bind) -> str:
    """``postgresql`` or ``sqlite``; any other database is a configuration error."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name not in SUPPORTED:
        raise ConfigError(
            f"a {dialect.name} database is not supported: set OUTREACH_DATABASE_URL to "
            "postgresql+psycopg://… or sqlite:///…"
        )
    return str(dialect.name)


def is_postgresql(bind: Bind) -> bool:
    return name_of(bind) == "postgresql"


def insert(bind: Bind, table: Any) -> Any:
    """The dialect's ``INSERT`` (the one with ``on_conflict_do_nothing`` /
    ``on_conflict_do_update``) into ``table`` (a model or a Table)."""
    return (pg_dialect if is_postgresql(bind) else sqlite_dialect).insert(table)


def among(bind: Bind | str, column: ColumnElement[Any] | QueryableAttribute[Any], ids: Sequence[Any] | str,
          *, type_: Any = BigInteger) -> ColumnElement[bool]:
    """``column IN ids``: on PostgreSQL ``= ANY(array)``, one parameter, so the
    statement's text is the same for any number of ids (cached, prepared; an
    expanded IN of a hundred ids cost the worker about 1 ms a batch to render
    and send); SQLite takes the plain IN. ``ids`` as a name: a parameter of
    that name, given when the statement is executed; ``bind`` may be the
    database's name, for a statement built before it runs; ``type_``: of the
    values (ids by default)."""
    name, value = (ids, None) if isinstance(ids, str) else (None, list(ids))
    if bind == "postgresql" if isinstance(bind, str) else is_postgresql(bind):
        return column == any_(bindparam(name, value, type_=pg_dialect.ARRAY(type_)))
    return column.in_(bindparam(name, value, expanding=True))


def tune_session(session: Session, work_mem: str = PLANNING_WORK_MEM) -> None:
    """Per-transaction settings for large set-based statements (PostgreSQL)."""
    if is_postgresql(session):
        session.execute(select(func.set_config("work_mem", work_mem, True)))


def has_lateral(session: Session) -> bool:
    """LATERAL joins (PostgreSQL; SQLite has none)."""
    return is_postgresql(session)


def materialize(session: Session, query: Select[*tuple[Any, ...]], name: str, *, key: str | None = None) -> Table:
    """Evaluate ``query`` once into a temporary table (dropped at the end of the
    transaction on PostgreSQL, replaced on SQLite) and return the Table.

    ``key`` names a column that is unique in the result: it becomes the
    table's primary key (on SQLite an integer key is the rowid, so rows are
    found by it without a separate index)."""
    bind = session.connection()
    columns = [
        Column(c.name, String() if isinstance(c.type, NullType) else c.type, primary_key=c.name == key,
               autoincrement=False)
        for c in query.selected_columns
    ]
    postgresql = is_postgresql(session)
    options: dict[str, Any] = {"postgresql_on_commit": "DROP"} if postgresql else {}
    table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"], **options)
    if not postgresql:
        table.drop(bind, checkfirst=True)
    table.create(bind)
    session.execute(portable_insert(table).from_select([c.name for c in columns], query))
    return table


def load_temporary(session: Session, query: Select[*tuple[Any, ...]], name: str, *, key: str) -> Table:
    """Like :func:`materialize`, for a large aggregate read in index order.

    PostgreSQL: ``CREATE TEMPORARY TABLE AS``, which may read with parallel
    workers (an ``INSERT … SELECT`` may not), with hash aggregation off — the
    aggregate streams in index order, while a hash of a million groups spills
    to disk (17.8 s against 3.2 s at 10M orders when a larger work_mem made
    PostgreSQL choose one). No key: the scans and hash joins that read it
    need none. Drop it with :func:`drop_temporary`.
    SQLite: ``key`` becomes the rowid, so rows are found by it without an index.
    """
    if not is_postgresql(session):
        return materialize(session, query, name, key=key)
    session.execute(select(func.set_config("enable_hashagg", "off", True)))
    session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    created = CreateTableAs(query, name, temporary=True)
    session.execute(created)
    session.execute(select(func.set_config("enable_hashagg", "on", True)))
    return created.table


def drop_temporary(session: Session, table: Table) -> None:
    """Drop a table made by :func:`load_temporary` (on SQLite the next load replaces it)."""
    if is_postgresql(session):
        session.execute(text(f"DROP TABLE {table.name}"))


def refresh_statistics(bind: Session | Connection, table: str) -> None:
    """Let PostgreSQL's planner see a table's new rows now (``ANALYZE``)
    rather than at autovacuum's next pass: right after a bulk insert its
    estimates still describe the table before it, and a statement that is an
    index look-up by id may be planned as a scan of every row of a status.
    SQLite's planner needs no statistics for look-ups by rowid."""
    if is_postgresql(bind):
        bind.execute(text(f"ANALYZE {table}"))


def empty_for_reload(session: Session, table: Table) -> None:
    """Empty ``table`` and drop its secondary indexes (and, on PostgreSQL, its
    primary key) so a bulk load pays one sort per index afterwards instead of
    a million insertions each. Both databases change schema transactionally:
    a failed reload leaves the old rows and indexes. Undo with
    :func:`restore_after_reload`."""
    if is_postgresql(session):
        # Far cheaper than deleting every row.
        session.execute(text(f"TRUNCATE {table.name}"))
        session.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT {table.primary_key.name}"))
    else:
        session.execute(delete(table))
    for index in sorted(table.indexes, key=lambda index: str(index.name)):
        index.drop(session.connection())


def restore_after_reload(session: Session, table: Table) -> None:
    """Rebuild what :func:`empty_for_reload` dropped."""
    if is_postgresql(session):
        key = ", ".join(c.name for c in table.primary_key.columns)
        session.execute(text(f"ALTER TABLE {table.name} ADD CONSTRAINT {table.primary_key.name} PRIMARY KEY ({key})"))
    for index in sorted(table.indexes, key=lambda index: str(index.name)):
        index.create(session.connection())

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
    expr = compiler.process(next(iter(element.clauses)), **kw)
    return (
        f"(CASE WHEN ({expr}) ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' "
        f"THEN CAST(({expr}) AS DOUBLE PRECISION) END)"
    )


@compiles(numeric_text, "sqlite")
def _sqlite(element: numeric_text, compiler: Any, **kw: Any) -> str:
    expr = compiler.process(next(iter(element.clauses)), **kw)
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
    return str(compiler.process(numeric_text(next(iter(element.clauses)).as_string()), **kw))


@compiles(json_number, "sqlite")
def _sqlite_json(element: json_number, compiler: Any, **kw: Any) -> str:
    # JSON_EXTRACT reads true as the integer 1: ask json_type() what it is.
    member = next(iter(element.clauses))
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
    registered on every connection by ``engine.make_engine``. Both follow the
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


class hash32(FunctionElement[int]):
    """The first 32 bits of SHA-256 over a text expression (UTF-8), as an
    integer 0 … 2³²−1 — the same number on every database and in Python
    (:func:`sha256_32`). PostgreSQL computes it with its own ``sha256()``;
    SQLite calls :func:`sha256_32`, registered on every connection by
    ``engine.make_engine`` as ``outreach_hash32``."""

    type = BigInteger()
    inherit_cache = True
    name = "hash32"


@compiles(hash32, "postgresql")
def _pg_hash32(element: hash32, compiler: Any, **kw: Any) -> str:
    expr = compiler.process(next(iter(element.clauses)), **kw)
    return f"(('x' || left(encode(sha256(convert_to({expr}, 'UTF8')), 'hex'), 8))::bit(32)::bigint)"


@compiles(hash32, "sqlite")
def _sqlite_hash32(element: hash32, compiler: Any, **kw: Any) -> str:
    return f"outreach_hash32({compiler.process(next(iter(element.clauses)), **kw)})"


def sha256_32(value: str | None) -> int | None:
    """Python statement of :class:`hash32` (and SQLite's ``outreach_hash32``)."""
    if value is None:
        return None
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:4], "big")

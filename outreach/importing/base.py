"""What every kind of import shares: reading cells with located problems, the
shape of a kind, and the dialect-specific upsert."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Connection, select

from outreach.errors import Problem
from outreach.importing.source import Header, SourceRow
from outreach.importing.values import InvalidValue
from outreach.store import dialect
from outreach.store.models import Base, Customer

T = TypeVar("T")
R = TypeVar("R")


class Cells:
    """One row's cells, read through parsers that turn failures into problems."""

    def __init__(self, *, row: SourceRow, file: str) -> None:
        self.row = row
        self.file = file
        self.problems: list[Problem] = []

    def raw(self, column: str) -> str:
        return self.row.values.get(column, "")

    def problem(self, column: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(message, file=self.file, row=self.row.number, field=column, hint=hint))

    def get(self, column: str, parse: Callable[[str], T], default: T) -> T:
        """The parsed cell, ``default`` if it is empty (or, after a problem, invalid)."""
        text = self.raw(column)
        if not text:
            return default
        try:
            return parse(text)
        except InvalidValue as exc:
            self.problem(column, exc.message, exc.hint)
            return default

    def required(self, column: str, parse: Callable[[str], T], *, hint: str) -> T | None:
        if not self.raw(column):
            self.problem(column, f"{column} is empty", hint)
            return None
        return self.get(column, parse, None)


@dataclass
class Parsed(Generic[R]):
    """A row that passed the checks, and the record it becomes."""

    row: SourceRow
    record: R


@dataclass
class Rejected:
    row: SourceRow
    problems: list[Problem]


@dataclass
class Written:
    inserted: int = 0
    updated: int = 0
    #: Addresses suppressed because an erased customer had them.
    suppressed: int = 0


class Kind(Generic[R]):
    """One kind of CSV (customers, orders, ...).

    ``parse`` checks one row without the database; ``resolve`` checks a batch
    against it (one query per batch, e.g. for customer ids); ``write`` stores
    a batch of good rows with a few bulk statements.
    """

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    required_columns: ClassVar[tuple[str, ...]]
    #: Where other columns go ("attributes", "properties"), or None: ignored.
    extra_into: ClassVar[str | None] = None

    def __init__(self, *, header: Header, file: str, now: datetime) -> None:
        self.header = header
        self.file = file
        self.now = now
        self.extras = header.others(self.columns) if self.extra_into else []

    def parse(self, cells: Cells) -> R | None:
        raise NotImplementedError

    def resolve(self, conn: Connection, batch: list[Parsed[R]]) -> list[Rejected]:
        """Database checks for a batch; drops the rows it rejects from ``batch``."""
        return []

    def write(self, conn: Connection, batch: list[Parsed[R]]) -> Written:
        raise NotImplementedError

    def extra_values(self, row: SourceRow) -> dict[str, str]:
        """The row's other columns as strings, empty cells left out."""
        out: dict[str, str] = {}
        for position, name in self.extras:
            if position < len(row.cells) and (value := row.cells[position].strip()):
                out[name] = value
        return out


def upsert(conn: Connection, model: type[Base], *, key: str, update: Iterable[str]) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET the ``update`` columns."""
    stmt = dialect.insert(conn, model)
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={column: stmt.excluded[column] for column in update}
    )


def keep_last(batch: list[Parsed[R]], key: Callable[[R], str]) -> list[Parsed[R]]:
    """One entry per key, the last row winning (an upsert statement may not
    touch the same key twice)."""
    return list({key(p.record): p for p in batch}.values())


def customer_ids(conn: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}
    rows = conn.execute(select(Customer.external_id, Customer.id).where(Customer.external_id.in_(wanted)))
    return {ext: pk for ext, pk in rows}


@dataclass
class CustomerRef:
    """A row's customer, by the external id the file names it with."""

    external_id: str
    id: int | None = None


def resolve_customers(conn: Connection, batch: list[Parsed[Any]], *, file: str) -> list[Rejected]:
    """Fill ``record.customer.id`` for each row; reject rows naming an unknown customer."""
    known = customer_ids(conn, (p.record.customer.external_id for p in batch))
    rejected: list[Rejected] = []
    kept: list[Parsed[Any]] = []
    for parsed in batch:
        ref: CustomerRef = parsed.record.customer
        ref.id = known.get(ref.external_id)
        if ref.id is None:
            problem = Problem(
                f"unknown customer '{ref.external_id}'",
                file=file,
                row=parsed.row.number,
                field="customer_id",
                hint="import customers first",
            )
            rejected.append(Rejected(parsed.row, [problem]))
        else:
            kept.append(parsed)
    batch[:] = kept
    return rejected

"""Streaming CSV import of customers, orders, consents and custom events.

``import_csv`` reads the file in batches of ``batch_size`` rows and stores
each batch with a few bulk statements (an upsert by ``external_id`` and, for
a batch, one lookup of the customers it names), so a file of any size is
imported in constant memory and without a query per row.

One import is one transaction:

* by default, if any row is bad nothing is committed and ``ImportRowError``
  lists every bad row (file, row as a spreadsheet numbers it, column, what is
  wrong and how to fix it; at most ``MAX_PROBLEMS``, then "... and N more");
* with ``skip_invalid=True`` the good rows are committed and the bad ones
  are written to a reject file: the original columns plus ``error``, so it
  can be fixed in a spreadsheet and imported again (a column named ``error``
  is never imported as data).

A broken header (a required column missing) or a file that is not UTF-8 CSV
is always an error, whatever ``skip_invalid`` says. What each kind of file
holds is described in ``outreach/importing/<kind>.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Connection, Engine

from outreach.clock import to_naive_utc
from outreach.errors import ImportRowError, Problem, RegistryError
from outreach.importing.base import Cells, Kind, Parsed, Rejected
from outreach.importing.consents import Consents
from outreach.importing.customers import Customers
from outreach.importing.events import Events
from outreach.importing.orders import Orders
from outreach.importing.source import CsvSource, Header, RejectWriter, SourceRow

ImportKind = Literal["customers", "orders", "consents", "events"]
KINDS: dict[str, type[Kind[Any]]] = {k.name: k for k in (Customers, Orders, Consents, Events)}
#: Problems listed in one ImportRowError; the rest are counted in a last line.
MAX_PROBLEMS = 100
#: Rows per batch, at most: keeps every batch's IN (...) list and multi-row
#: INSERT under SQLite's and PostgreSQL's limits on bound parameters.
MAX_BATCH_SIZE = 10_000
DEFAULT_BATCH_SIZE = 1000
REJECTS_SUFFIX = ".rejects.csv"
#: Separators some spreadsheets write instead of commas (e.g. Excel in Europe).
OTHER_SEPARATORS = (";", "\t")
STRICT_HINT = (
    "fix the rows and import again, or use --skip-invalid to import the good rows "
    "and get the bad ones in a reject file"
)


@dataclass
class ImportResult:
    kind: str
    rows: int
    inserted: int
    updated: int
    rejected: int
    reject_path: Path | None
    #: Addresses suppressed on the way in: an erased customer had them.
    suppressed: int = 0


def default_reject_path(path: Path) -> Path:
    """``customers.csv`` -> ``customers.rejects.csv``, next to it."""
    return path.with_name(path.stem + REJECTS_SUFFIX)


def import_csv(
    engine: Engine,
    kind: ImportKind,
    path: Path,
    *,
    stream: IO[bytes] | None = None,
    skip_invalid: bool = False,
    reject_path: Path | None = None,
    now: datetime,
    progress: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportResult:
    """Import (upsert) one CSV file of ``kind`` in one transaction.

    With ``stream`` (standard input) the rows are read from it and ``path``
    only names it in problems; the reject file defaults to
    ``<kind>.rejects.csv`` in the working folder."""
    if kind not in KINDS:
        raise RegistryError(f"unknown import kind '{kind}'; use one of {', '.join(KINDS)}")
    return import_rows(engine, KINDS[kind], kind, path, stream=stream, skip_invalid=skip_invalid,
                       reject_path=reject_path, now=now, progress=progress, batch_size=batch_size)


def import_rows(
    engine: Engine,
    make: Callable[..., Kind[Any]],
    kind: str,
    path: Path,
    *,
    stream: IO[bytes] | None = None,
    skip_invalid: bool = False,
    reject_path: Path | None = None,
    now: datetime,
    progress: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportResult:
    """What :func:`import_csv` does, for the rows of a ``kind`` its importer
    (``make(header=, file=, now=)``) checks and writes (coupons, with a pool)."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
    path = Path(path)
    if stream is None and not path.is_file():
        raise ImportRowError(
            [Problem("there is no such file", file=str(path), hint="check the path and the file name")]
        )
    default_rejects = Path(f"{kind}{REJECTS_SUFFIX}") if stream is not None else default_reject_path(path)
    rejects_to = (reject_path or default_rejects) if skip_invalid else None
    if stream is None and rejects_to is not None and rejects_to.resolve() == path.resolve():
        raise ImportRowError(
            [Problem("the reject file would overwrite the file being imported", file=str(path),
                     hint="name another file with --rejects")]
        )
    with CsvSource(path=path, stream=stream) as source:
        importer = make(header=source.header, file=source.file, now=to_naive_utc(now))
        check_header(importer, source.header, file=source.file)
        rejects = RejectWriter(path=rejects_to, header=source.header) if rejects_to else None
        try:
            result = _run(engine, importer, source, rejects=rejects, progress=progress, batch_size=batch_size)
        except BaseException:
            if rejects:
                rejects.discard()
            raise
        if rejects:
            rejects.commit()
    return result


def check_header(importer: Kind[Any], header: Header, *, file: str) -> None:
    problems: list[Problem] = []
    expected = ",".join(importer.columns)
    required = ", ".join(importer.required_columns)
    missing = [column for column in importer.required_columns if not header.has(column)]
    if missing:
        hint = f"row 1 of a {importer.name} file names the columns: {expected} (required: {required})"
        if len(header.names) == 1 and any(sep in header.names[0] for sep in OTHER_SEPARATORS):
            hint = "separate the columns with commas; " + hint
        problems.append(
            Problem(
                f"row 1 lacks the required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                file=file,
                row=1,
                field=", ".join(missing),
                hint=hint,
            )
        )
    for name in dict.fromkeys(header.duplicates):
        problems.append(
            Problem(f"column '{name}' appears more than once", file=file, row=1, field=name,
                    hint="rename or delete one of them")
        )
    if problems:
        raise ImportRowError(problems)


class ProblemLog:
    """Every problem counted, the first ``MAX_PROBLEMS`` kept."""

    def __init__(self, *, file: str) -> None:
        self.file = file
        self.shown: list[Problem] = []
        self.count = 0

    def add(self, problems: list[Problem]) -> None:
        self.count += len(problems)
        self.shown.extend(problems[: max(0, MAX_PROBLEMS - len(self.shown))])

    def error(self) -> ImportRowError:
        problems = list(self.shown)
        if self.count > len(problems):
            more = self.count - len(problems)
            problems.append(Problem(f"... and {more} more", file=self.file, hint=STRICT_HINT))
        return ImportRowError(problems)


def _run(
    engine: Engine,
    importer: Kind[Any],
    source: CsvSource,
    *,
    rejects: RejectWriter | None,
    progress: bool,
    batch_size: int,
) -> ImportResult:
    log = ProblemLog(file=source.file)
    rows = inserted = updated = rejected = suppressed = 0
    bar = Progress(
        TextColumn(f"importing {importer.name}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not progress, transient=True,
    )
    with bar, engine.begin() as conn:
        task = bar.add_task(importer.name, total=source.size)
        for batch in _batches(source.rows(), batch_size):
            rows += len(batch)
            good, bad = _check(conn, importer, batch, file=source.file)
            for refused in bad:
                log.add(refused.problems)
                if rejects:
                    rejects.write(refused.row, refused.problems)
            rejected += len(bad)
            # Strict mode: once a row is bad nothing will be committed, so
            # only keep checking (to report every bad row), stop writing.
            if good and (rejects or not log.count):
                written = importer.write(conn, good)
                inserted, updated = inserted + written.inserted, updated + written.updated
                suppressed += written.suppressed
            bar.update(task, completed=source.position())
        if log.count and not rejects:
            raise log.error()
    return ImportResult(
        kind=importer.name, rows=rows, inserted=inserted, updated=updated, rejected=rejected,
        reject_path=rejects.path if rejects else None, suppressed=suppressed,
    )


def _batches(rows: Iterator[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    while batch := list(islice(rows, size)):
        yield batch


def _check(
    conn: Connection, importer: Kind[Any], batch: list[SourceRow], *, file: str
) -> tuple[list[Parsed[Any]], list[Rejected]]:
    """Split a batch into good rows (parsed) and bad rows (with problems), in file order."""
    good: list[Parsed[Any]] = []
    bad: list[Rejected] = []
    for row in batch:
        cells = Cells(row=row, file=file)
        _check_shape(cells, importer.header)
        record = importer.parse(cells)
        if cells.problems or record is None:
            bad.append(Rejected(row, cells.problems))
        else:
            good.append(Parsed(row, record))
    bad.extend(importer.resolve(conn, good))
    bad.sort(key=lambda r: r.row.number)
    return good, bad


def _check_shape(cells: Cells, header: Header) -> None:
    """Cells the header has no name for are a mistake, not data to drop."""
    row = cells.row
    if len(row.cells) > len(header.cells) and any(c.strip() for c in row.cells[len(header.cells) :]):
        cells.problems.append(
            Problem(
                f"the row has {len(row.cells)} cells but row 1 names {len(header.cells)} columns",
                file=cells.file,
                row=row.number,
                hint='put a cell that contains a comma in double quotes, e.g. "Shanghai, China"',
            )
        )
    if len(row.cells) < len(header.cells) and any(header.names[len(row.cells):]):
        missing = [name for name in header.names[len(row.cells):] if name]
        cells.problems.append(
            Problem(
                f"the row has {len(row.cells)} cells but row 1 names {len(header.cells)} columns: "
                f"{', '.join(repr(m) for m in missing[:5])}{' …' if len(missing) > 5 else ''} "
                "would be emptied",
                file=cells.file,
                row=row.number,
                hint="add the missing cells (empty ones too: a,b,,) — a short row is often a line break "
                     "inside a cell that is not quoted",
            )
        )
    for position, name in enumerate(header.names[: len(row.cells)]):
        if not name and row.cells[position].strip():
            cells.problems.append(
                Problem(
                    f"column {position + 1} has a value but no name in row 1",
                    file=cells.file,
                    row=row.number,
                    hint="name the column in row 1 or delete it",
                )
            )

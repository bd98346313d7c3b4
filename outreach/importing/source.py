"""Reading a CSV file row by row, and writing the rows we refuse.

The file is read as bytes, one physical line at a time, and decoded as UTF-8
(a leading BOM is dropped), so a file of any size streams in constant memory,
an encoding problem is reported at the row where it happens, and the bytes
read so far drive the progress bar.

Row numbers are the ones a spreadsheet shows: the header is row 1, the first
data row is row 2, and a quoted cell spanning several lines is still one row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from outreach.errors import ImportRowError, Problem

UTF8_BOM = b"\xef\xbb\xbf"
#: Byte-order marks of encodings a spreadsheet may save as, but we do not read.
FOREIGN_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
ENCODING_HINT = (
    "save the file as UTF-8 (in Excel: File > Save As > 'CSV UTF-8'); "
    "files saved by Chinese Excel or WPS are often GBK"
)
#: How a zip file starts: an Excel workbook (.xlsx) given instead of CSV.
ZIP_MAGIC = b"PK\x03\x04"
CSV_HINT = "save it from your spreadsheet as CSV (in Excel: File > Save As > 'CSV UTF-8')"
#: The column the reject file adds; a column of this name is never data.
ERROR_COLUMN = "error"


@dataclass
class SourceRow:
    """One data row: where it is, its raw cells, and its cells by column."""

    number: int
    cells: list[str]
    values: dict[str, str]


class Header:
    """The first row: canonical names of the known columns, the rest as given."""

    def __init__(self, *, cells: list[str]) -> None:
        self.cells = cells
        self.names = [cell.strip() for cell in cells]
        self.index: dict[str, int] = {}
        self.duplicates: list[str] = []
        for i, name in enumerate(self.names):
            key = name.lower()
            if not key:
                continue
            if key in self.index:
                self.duplicates.append(name)
            self.index.setdefault(key, i)

    def has(self, column: str) -> bool:
        return column in self.index

    def others(self, known: tuple[str, ...]) -> list[tuple[int, str]]:
        """(position, name) of the named columns that are not ``known``."""
        return [
            (i, name)
            for i, name in enumerate(self.names)
            if name and name.lower() not in known and name.lower() != ERROR_COLUMN
        ]


class CsvSource:
    """Context manager over a CSV file: ``header``, then ``rows()``."""

    def __init__(self, *, path: Path, stream: IO[bytes] | None = None) -> None:
        """Read ``path``, or ``stream`` (standard input) named ``path`` in problems."""
        self.path = path
        self.file = str(path)
        self._binary: IO[bytes] = stream if stream is not None else path.open("rb")
        self._owned = stream is None
        #: Bytes in all, when known (a file; not a pipe).
        self.size: int | None = path.stat().st_size if stream is None else None
        self._read = 0
        self._row = 0
        # strict: a quote opened and never closed is an error at the end of
        # the file, not one cell that silently swallows every following row.
        self._records = csv.reader(self._lines(), strict=True)
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._binary.close()

    def position(self) -> int:
        """Bytes read so far."""
        return self._read

    def _fail(self, message: str, *, row: int, hint: str) -> ImportRowError:
        return ImportRowError([Problem(message, file=self.file, row=row, hint=hint)])

    def _lines(self) -> Iterator[str]:
        first = True
        for raw in self._binary:
            self._read += len(raw)
            if first:
                first = False
                if raw.startswith(ZIP_MAGIC):
                    raise self._fail("the file is a spreadsheet workbook, not CSV", row=1, hint=CSV_HINT)
                for bom, name in FOREIGN_BOMS.items():
                    if raw.startswith(bom):
                        raise self._fail(f"the file is {name} encoded", row=1, hint=ENCODING_HINT)
                raw = raw.removeprefix(UTF8_BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.start + 4].hex(" ")
                message = f"the file is not UTF-8 text (bytes {bad} cannot be read)"
                raise self._fail(message, row=self._row + 1, hint=ENCODING_HINT) from None
            if "\x00" in line:
                raise self._fail("the file contains NUL characters, so it is not CSV text", row=self._row + 1,
                                 hint=CSV_HINT)
            yield line

    def _next(self) -> list[str] | None:
        try:
            cells = next(self._records, None)
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise self._fail(
                    f'a double quote (") opened in row {self._row + 1} is never closed, so every row after '
                    "it would be read as one cell",
                    row=self._row + 1,
                    hint='close the quote, or double a quote that is part of the text ("" inside a quoted cell)',
                ) from None
            raise self._fail(
                f"the file is not a readable CSV file ({exc})",
                row=self._row + 1,
                hint=CSV_HINT + '; a double quote inside a cell must be doubled ("") and the cell quoted',
            ) from None
        if cells is not None:
            self._row += 1
        return cells

    def _read_header(self) -> Header:
        cells = self._next()
        if not cells or not any(cell.strip() for cell in cells):
            raise self._fail(
                "the file is empty or its first row is blank", row=1, hint="row 1 must name the columns"
            )
        return Header(cells=cells)

    def rows(self) -> Iterator[SourceRow]:
        """Data rows; blank rows (no cell filled in) are passed over."""
        names = [name.lower() for name in self.header.names]
        while (cells := self._next()) is not None:
            if not any(cell.strip() for cell in cells):
                continue
            values = {name: cell.strip() for name, cell in zip(names, cells, strict=False) if name}
            yield SourceRow(number=self._row, cells=cells, values=values)


class RejectWriter:
    """The rows we refused, as the original columns plus ``error``.

    Written to a temporary sibling and moved into place by ``commit()``, so a
    failed import never leaves a reject file that describes nothing.
    """

    def __init__(self, *, path: Path, header: Header) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._error_at = header.index.get(ERROR_COLUMN)
        self._width = len(header.cells)
        self._file = self._tmp.open("w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(header.cells if self._error_at is not None else [*header.cells, ERROR_COLUMN])

    def write(self, row: SourceRow, problems: list[Problem]) -> None:
        cells = row.cells + [""] * (self._width - len(row.cells))
        text = "; ".join(describe(p) for p in problems)
        if self._error_at is not None:
            cells[self._error_at] = text
        else:
            cells.append(text)
        self._writer.writerow(cells)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def describe(problem: Problem) -> str:
    """A problem as one reject-file cell: ``phone: ... (hint: ...)``."""
    text = f"{problem.field}: {problem.message}" if problem.field else problem.message
    return f"{text} (hint: {problem.hint})" if problem.hint else text

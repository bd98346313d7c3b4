"""coupons.csv: the shop's own codes, into a pool (``outreach coupons import POOL FILE``).

Columns: ``code`` (required) and ``expires`` (the last day the code is good
for, ``2026-04-30``; optional). Codes are stored in capitals — shops treat
them without regard to case — and must be 3 to 64 letters, digits, ``-``,
``_`` or ``.``. A code is unique across all pools: one already in another
pool is refused (with the pool's name), one already in this pool is updated
(its ``expires``), one twice in the file is refused at its second row.

Strict, always: a bad row is reported with its row, column and a hint, and
then nothing of the file is imported (no half pool, not even the pool).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, select

from outreach.errors import Problem
from outreach.importing.base import Cells, Kind, Parsed, Rejected, Written, upsert
from outreach.importing.run import ImportResult, import_rows
from outreach.importing.source import Header
from outreach.importing.values import InvalidValue, parse_date, parse_instant
from outreach.store import coupons, dialect
from outreach.store.models import Coupon, CouponPool

CODE_HINT = "a code is 3 to 64 letters, digits, '-', '_' or '.', without spaces (e.g. SPRING15-7KQ4M9)"


def parse_code(raw: str) -> str:
    code = coupons.normalize_code(raw)
    if not coupons.CODE.match(code):
        raise InvalidValue(f"'{raw[:40]}' is not a coupon code", hint=CODE_HINT)
    return code


def parse_day(raw: str) -> date:
    """A day (``2026-04-30``), or the day of an ISO 8601 time."""
    try:
        return parse_date(raw)
    except InvalidValue:
        try:
            return parse_instant(raw).date()
        except InvalidValue:
            raise InvalidValue(f"'{raw}' is not a date", hint="write the code's last day as YYYY-MM-DD, "
                               "e.g. 2026-04-30") from None


@dataclass
class CouponRecord:
    code: str
    expires_on: date | None


class Coupons(Kind[CouponRecord]):
    name = "coupons"
    columns = ("code", "expires")
    required_columns = ("code",)

    def __init__(self, *, header: Header, file: str, now: datetime, pool: str) -> None:
        super().__init__(header=header, file=file, now=now)
        self.pool = pool
        #: Each code's first row in the file.
        self.rows: dict[str, int] = {}

    def parse(self, cells: Cells) -> CouponRecord | None:
        code = cells.required("code", parse_code, hint="one code per row, as your shop knows it")
        expires = cells.get("expires", parse_day, None)
        if cells.problems or code is None:
            return None
        first = self.rows.setdefault(code, cells.row.number)
        if first != cells.row.number:
            cells.problem("code", f"code '{code}' is also in row {first}", hint="list each code once")
            return None
        return CouponRecord(code, expires)

    def resolve(self, conn: Connection, batch: list[Parsed[CouponRecord]]) -> list[Rejected]:
        """Codes already in another pool are refused: a code is unique across pools."""
        codes = [p.record.code for p in batch]
        elsewhere = dict(conn.execute(
            select(Coupon.code, CouponPool.name).join(CouponPool, CouponPool.id == Coupon.pool_id)
            .where(Coupon.code.in_(codes), CouponPool.name != self.pool)).all())
        rejected = [Rejected(p.row, [Problem(
            f"code '{p.record.code}' is already in pool '{elsewhere[p.record.code]}'", file=self.file,
            row=p.row.number, field="code",
            hint=f"a code belongs to one pool: remove the row, or import it into pool {elsewhere[p.record.code]}")])
            for p in batch if p.record.code in elsewhere]
        batch[:] = [p for p in batch if p.record.code not in elsewhere]
        return rejected

    def write(self, conn: Connection, batch: list[Parsed[CouponRecord]]) -> Written:
        pool_id = coupons.pool_named(conn, self.pool, now=self.now)
        codes = [p.record.code for p in batch]
        existing = set(conn.scalars(select(Coupon.code).where(Coupon.code.in_(codes))))
        update = ["expires_on"] if self.header.has("expires") else []
        stmt = upsert(conn, Coupon, key="code", update=update) if update else (
            dialect.insert(conn, Coupon).on_conflict_do_nothing(index_elements=["code"]))
        conn.execute(stmt, [{"pool_id": pool_id, "code": p.record.code, "source": "imported", "added_at": self.now,
                             "expires_on": p.record.expires_on} for p in batch])
        return Written(inserted=len(batch) - len(existing), updated=len(existing))


def import_coupons(engine: Engine, pool: str, path: Path, *, stream: IO[bytes] | None = None, now: datetime,
                   progress: bool = False) -> ImportResult:
    """Import the codes of a CSV file into ``pool`` (made if new), all of them or none."""
    make: Any = functools.partial(Coupons, pool=pool)
    return import_rows(engine, make, "coupons", path, stream=stream, now=now, progress=progress)

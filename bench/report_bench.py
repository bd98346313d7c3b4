"""How long the ROI report takes at scale on PostgreSQL, against a full scan of the orders.

    python bench/report_bench.py                       # 1M customers, 10M orders, 5M messages
    python bench/report_bench.py --customers 100000    # a quick check (~1.5 min with its build)
    python bench/report_bench.py --explain             # and the plan of the slowest statement

The database (``outreach_report_bench``, ``…_100000`` for 100,000 customers;
``bench/report_data.py`` builds it set-based, in resumable steps) is built
once and reused while its sizes are the ones asked for. Each component then runs ``--repeat`` times, warm, and
its best time is printed beside the **reference** measured in the same run —
``SELECT count(*), sum(amount) FROM orders``, one scan of every order, the
least any honest report over them must do — as a ratio: this machine is
shared and noisy, the ratio less so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from outreach.store import variants
from outreach.store.models import Message
from outreach.store.redemptions import offer_results
from report_data import NOW, USD_RATE, Sizes, ensure  # bench/report_data.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DB_URL = os.environ.get("OUTREACH_BENCH_REPORT_DB",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/outreach_report_bench")
DEFAULT_CUSTOMERS = 1_000_000
console = Console(width=140)


def reference(engine: Engine) -> int:
    with engine.connect() as conn:
        count, _ = conn.execute(text("SELECT count(*), sum(amount) FROM orders")).one()
    return int(count)


#: The report's rates: USD converted into CNY (a CASE on the order's currency).
RATES = {"CNY": Decimal(1), "USD": Decimal(USD_RATE)}


def outcomes(engine: Engine, *, convert: bool = False) -> int:
    with Session(engine) as session:
        return len(variants.variant_outcomes(session, now=NOW, rates=RATES if convert else None))


def offers(engine: Engine, *, by_variant: bool = False) -> int:
    with Session(engine) as session:
        return len(offer_results(session, by=[Message.variant] if by_variant else ()))


def document(*, splits: list[str] | None) -> Callable[[Engine], int]:
    """The whole report document as ``outreach report`` builds it (``splits=[]``: the table's, without the
    timeline; None: all six splits and the timeline, as for json and the page)."""
    def run(engine: Engine) -> int:
        from outreach.config import load_settings
        from outreach.reporting.document import build_document

        settings = load_settings(database_url=engine.url.render_as_string(hide_password=False),
                                 rules_dir=ROOT / "rules")
        return len(build_document(engine, settings, now=NOW, splits=splits, timeline=splits is None)["rules"])
    return run


def cli(url: str, *options: str) -> Callable[[Engine], int]:
    """``outreach report`` end to end, a process of its own (start-up, settings, the document, its rendering)."""
    def run(_: Engine) -> int:
        env = {**os.environ, "OUTREACH_DATABASE_URL": url, "OUTREACH_RULES_DIR": str(ROOT / "rules"),
               "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-m", "outreach", "report", "--now", NOW.isoformat(), *options],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        return len(done.stdout)
    return run


class Statements:
    """The SQL statements a component runs, with their times (for --explain)."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[tuple[float, str, Any]] = []
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.seen.append((time.perf_counter() - self._started.pop(id(cursor), 0.0), statement, params))


#: A component slower than this runs once (its best of 3 would take minutes; it is far off anyway).
ONCE_OVER_S = 40.0


def best_of(fn: Callable[[Engine], int], engine: Engine, repeat: int) -> tuple[float, int, int]:
    """(best seconds, rows, runs)."""
    best, rows, runs = float("inf"), 0, 0
    while runs < repeat and (runs == 0 or best < ONCE_OVER_S):
        started = time.perf_counter()
        rows = fn(engine)
        best, runs = min(best, time.perf_counter() - started), runs + 1
    return best, rows, runs


def explain(engine: Engine, seen: list[tuple[float, str, Any]]) -> str:
    """The plan of the slowest statement ``seen``, under the settings (set_config) made before it."""
    slowest = max(range(len(seen)), key=lambda i: seen[i][0])
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for _, statement, params in seen[:slowest]:
            if "set_config(" in statement:
                cursor.execute(statement, params)
        _, statement, params = seen[slowest]
        console.print(f"slowest statement ({seen[slowest][0]:.2f} s):\n{statement}", markup=False, highlight=False)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="customers (default 1,000,000)")
    parser.add_argument("--orders-per-customer", type=int, default=10, help="orders per customer on average")
    parser.add_argument("--messages", type=int, default=None, help="messages (default 5 per customer)")
    parser.add_argument("--rebuild", action="store_true", help="drop and build the database again")
    parser.add_argument("--db-url", default=None,
                        help=f"PostgreSQL database to build/reuse (default {DB_URL}, with _N appended for "
                             "N customers other than 1,000,000, so a quick check keeps the full-size database)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per component; the best is shown")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN (ANALYZE, BUFFERS) of the slowest statement")
    parser.add_argument("--only", default="", help="comma-separated components to time (default: all)")
    args = parser.parse_args()
    if args.db_url is None:
        args.db_url = DB_URL if args.customers == DEFAULT_CUSTOMERS else f"{DB_URL}_{args.customers}"
    if not args.db_url.startswith("postgresql"):
        parser.error("--db-url must be a PostgreSQL URL (postgresql+psycopg://…): the benchmark is for PostgreSQL")
    sizes = Sizes(args.customers, args.orders_per_customer, args.messages or 5 * args.customers)
    started = time.perf_counter()
    engine, building = ensure(args.db_url, sizes, rebuild=args.rebuild, say=console.print)
    console.print(f"database ready in {time.perf_counter() - started:.1f} s (building: {building:.1f} s); "
                  f"{sizes.customers:,} customers, {sizes.orders:,} orders, {sizes.messages:,} messages")

    components: list[tuple[str, Callable[[Engine], int]]] = [
        ("reference: count(*), sum(amount) FROM orders", reference),
        ("variant_outcomes", outcomes),
        ("variant_outcomes, converted amount", lambda e: outcomes(e, convert=True)),
        ("offer_results", offers),
        ("offer_results by variant", lambda e: offers(e, by_variant=True)),
        ("build_document, the table's (no split)", document(splits=[])),
        ("build_document, all six splits (json, csv, html)", document(splits=None)),
        ("outreach report (table)", cli(args.db_url)),
        ("outreach report --format json", cli(args.db_url, "--format", "json")),
    ]
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    statements = Statements(engine)
    table = Table(title=f"outreach report at {sizes.customers:,} customers / {sizes.orders:,} orders / "
                        f"{sizes.messages:,} messages (PostgreSQL, best of {args.repeat}, warm)")
    for column in ("component", "seconds", "× reference", "rows"):
        table.add_column(column, justify="left" if column == "component" else "right")
    base: float | None = None
    for name, fn in components:
        if wanted and name != components[0][0] and not any(w in name for w in wanted):
            continue
        try:
            seconds, rows, runs = best_of(fn, engine, args.repeat)
        except Exception as exc:  # noqa: BLE001 - a component that fails is shown, the others still run
            table.add_row(name, "failed", "", f"{type(exc).__name__}: {str(exc)[:80]}")
            continue
        base = base or seconds
        table.add_row(name + ("" if runs == args.repeat else f" ({runs} run)"), f"{seconds:.2f}",
                      f"{seconds / base:.1f}", f"{rows:,}")
        console.print(f"  {name}: {seconds:.2f} s")
    console.print(table)
    if args.explain and statements.seen:
        console.print(explain(engine, statements.seen), markup=False, highlight=False)


if __name__ == "__main__":
    main()

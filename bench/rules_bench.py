"""Rule evaluation speed and memory on a large synthetic base.

    python bench/rules_bench.py --customers 100000            # both databases
    python bench/rules_bench.py --customers 1000000 --db postgresql
    python bench/rules_bench.py --customers 1000000 --db postgresql --outbox-history 5000000

For each shipped rule: `rules preview` time (nothing written) and planning
time (select eligible, apply consent, cooldown, cap, holdout, quiet hours and
INSERT the planned messages), plus the benchmark process's peak memory.
Data is generated once per size (inside the database) and reused.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, delete, func, select, text

from outreach.planning.launch import plan_rule
from outreach.planning.preview import preview
from outreach.rules import RuleSet, load_rules
from outreach.store import stats
from outreach.store.engine import make_engine, migrate, transaction
from outreach.store.models import CampaignRun, Customer, Membership, Message, Order, Rule
from synth import generate, outbox_history  # bench/synth.py, beside this script

ROOT = Path(__file__).resolve().parents[1]

NOW = datetime(2026, 11, 20, 2, 0)  # 10:00 in Shanghai: inside the send windows there
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def server_mb(engine) -> str:  # type: ignore[no-untyped-def]
    """Peak resident memory of the PostgreSQL backends that did the step
    (``engine.dispose()`` before each step gives it fresh backends; shared
    buffers they touched are included). SQLite runs inside the benchmark
    process, so its memory is already in "peak MB"."""
    if engine.dialect.name != "postgresql":
        return "—"
    with engine.connect() as conn:
        pids = conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).all()
    peaks = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # a server on another machine: not measurable from here
            return "n/a"
        peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
    return f"{max(peaks):.0f}" if peaks else "n/a"


def database(kind: str, customers: int, orders: int, *, fresh: bool = False) -> str:
    """The benchmark database of this size (created empty when ``fresh``)."""
    name = f"outreach_bench_{customers}_{orders}"
    if kind == "sqlite":
        path = ROOT / "bench" / ".data" / f"{name}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            for leftover in path.parent.glob(f"{name}.db*"):
                leftover.unlink()
        return f"sqlite:///{path}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if fresh:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def ensure_data(kind: str, customers: int, orders: int, console: Console) -> tuple[str, float]:
    url = database(kind, customers, orders)
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        have = conn.scalar(select(func.count()).select_from(Customer))
        have_orders = conn.scalar(select(func.count()).select_from(Order))
    engine.dispose()
    if have == customers and have_orders == orders:
        return url, 0.0
    # Start from an empty database (deleting 10M orders one trigger at a time
    # on SQLite would take longer than generating them).
    url = database(kind, customers, orders, fresh=True)
    engine = make_engine(url)
    migrate(engine)
    console.print(f"generating {customers:,} customers and {orders:,} orders in {url.split('/')[-1]} …")
    started = time.perf_counter()
    generate(engine, customers=customers, orders=orders, now=NOW)
    engine.dispose()
    return url, time.perf_counter() - started


def reset_outbox(engine) -> None:  # type: ignore[no-untyped-def]
    """Start each measurement from an empty outbox, as a first launch would
    (TRUNCATE on PostgreSQL: deleting would leave the previous run's dead rows
    in every index the planner reads)."""
    with transaction(engine) as s:
        if engine.dialect.name == "postgresql":
            s.execute(text("TRUNCATE messages, tracking_events, campaign_runs, memberships, rules"))
            return
        s.execute(delete(Message))
        s.execute(delete(CampaignRun))
        s.execute(delete(Membership))
        s.execute(delete(Rule))


def run(kind: str, customers: int, orders: int, table: Table, console: Console, history: int = 0) -> None:
    url, gen = ensure_data(kind, customers, orders, console)
    engine = make_engine(url)
    reset_outbox(engine)
    if history:
        started = time.perf_counter()
        outbox_history(engine, messages=history, customers=customers, now=NOW)
        console.print(f"[dim]{kind}: {history:,} messages of outbox history written in "
                      f"{time.perf_counter() - started:.0f} s[/]")
    ruleset = RuleSet.from_folder(ROOT / "rules")
    engine.dispose()
    started = time.perf_counter()
    with transaction(engine) as s:
        stats.refresh(s, now=NOW)
    table.add_row(kind, f"{customers:,}", f"{orders:,}", "(customer stats refresh)", "", "",
                  f"{time.perf_counter() - started:.2f}", f"{peak_mb():.0f}", server_mb(engine))
    for loaded in load_rules(ROOT / "rules"):
        engine.dispose()
        t0 = time.perf_counter()
        p = preview(engine, loaded, now=NOW, ruleset=ruleset)
        t1 = time.perf_counter()
        result, _ = plan_rule(engine, loaded, now=NOW, ruleset=ruleset)
        t2 = time.perf_counter()
        table.add_row(kind, f"{customers:,}", f"{orders:,}", loaded.spec.name, f"{p.matched:,}",
                      f"{result.planned:,} (+{result.held_out:,} held out)", f"{t1 - t0:.2f} / {t2 - t1:.2f}",
                      f"{peak_mb():.0f}", server_mb(engine))
    if gen:
        console.print(f"[dim]{kind}: data generation took {gen:.0f} s[/]")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--outbox-history", type=int, default=0, metavar="N",
                        help="first fill the outbox with N sent messages of the last 365 days")
    args = parser.parse_args()
    console = Console(width=160)
    history = f"; outbox history {args.outbox_history:,} messages" if args.outbox_history else ""
    table = Table(title=f"Rule evaluation as of {NOW:%Y-%m-%d %H:%M} UTC (shipped rules/{history})")
    for col in ("db", "customers", "orders", "rule", "matched", "planned", "preview / plan s", "peak MB",
                "server MB"):
        table.add_column(col, justify="left" if col in ("db", "rule") else "right")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    orders = args.customers * args.orders_per_customer
    for kind in kinds:
        run(kind, args.customers, orders, table, console, history=args.outbox_history)
    console.print(table)


if __name__ == "__main__":
    main()

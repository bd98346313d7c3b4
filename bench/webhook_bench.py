"""Webhook server speed under wrk, against a hello-world app measured in the same run.

    python bench/webhook_bench.py                               # open, click, orders on both databases
    python bench/webhook_bench.py --db postgresql --endpoint open --requests 20000

For each endpoint and database: ``outreach serve`` runs as the real server
process (uvicorn, ``--workers`` processes) on a fresh database of
``--messages`` sent emails (one per customer, who has one order already); wrk (16 connections) sends
``--requests`` distinct valid requests spread over them — open pixels and
click links with signed tokens, or signed order deliveries (distinct orders
of distinct customers, signed when the run starts) — each exactly once
(``webhook_bench.lua``). Then the rows stored (tracking events, orders) are
counted: every request answered 2xx/3xx must be stored, and nothing more.
The reference is ``hello_app.py`` under the same uvicorn settings, driven
by the same script with the same requests, just before ours: this machine
is shared and noisy, so our figure is also printed as a ratio of it.
Needs wrk (Debian: ``apt-get install wrk``) and PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select, text

from outreach.config import load_settings
from outreach.domain import EventType
from outreach.sending import tokens
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Order, TrackingEvent
from outreach.webhooks.orders import PATH as ORDERS_PATH
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import free_port, wait_until_healthy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("OUTREACH_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SECRET, ORDER_SECRET = "bench-secret", "bench-shop-secret"
#: As the issue measured: 16 connections, on wrk's default 2 threads.
CONNECTIONS, THREADS = 16, 2
#: wrk runs for a set duration, its connections idle once every request is
#: answered: the warm-up runs this long, a measurement as long as the
#: warm-up's rate says its requests take, times this margin, plus a few seconds.
WARMUP_S, MARGIN, SLACK_S, MAX_RUN_S = 4, 1.5, 2, 300
#: Requests sent before each measurement (separate ones: warm caches and pools, not measured).
WARMUP_SHARE, WARMUP_MIN = 0.05, 200
STARTUP_TIMEOUT_S = 60
ENDPOINTS = ("open", "click", "orders")


def requests_file(path: Path, endpoint: str, count: int, messages: int, tag: str) -> None:
    """``count`` distinct valid requests, one a line, for the wrk script."""
    settings = load_settings(secret_key=SECRET, public_url="http://bench")
    now = datetime.now(UTC).replace(tzinfo=None)
    with path.open("w") as out:
        for k in range(count):
            message = k % messages + 1
            if endpoint == "open":
                out.write(f"GET\t{tokens.open_pixel_url(settings, message).removeprefix('http://bench')}\n")
            elif endpoint == "click":
                url = tokens.click_url(settings, message, f"https://shop.example/p/{k}")
                out.write(f"GET\t{url.removeprefix('http://bench')}\n")
            else:
                body = json.dumps({"external_id": f"{tag}-{k}", "customer_id": f"C{message}",
                                   "ordered_at": now.isoformat() + "Z", "amount": "88.00",
                                   "items": [{"sku": "LJ-100", "category": "tea", "amount": "88.00"}]}).encode()
                h = signed_headers(ORDER_SECRET, body, at=now)
                out.write(f"POST\t{ORDERS_PATH}\t{h['X-Outreach-Signature']}\t{h['X-Outreach-Timestamp']}\t"
                          f"{body.decode()}\n")


def populate(engine: Engine, messages: int) -> None:
    """``messages`` customers with email consent, each sent one email, each with one order."""
    d = engine.dialect.name
    series = (f"generate_series(1, {messages}) AS s(g)" if d == "postgresql" else
              f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {messages}) "
              "SELECT g FROM s) AS s")
    empty = "'{}'::json" if d == "postgresql" else "'{}'"
    at = {"at": datetime(2026, 11, 20)}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (external_id, name, email, timezone, locale, customer_type, "
                          f"attributes, created_at, updated_at) SELECT 'C' || g, 'Customer ' || g, "
                          f"'c' || g || '@bench.example', 'UTC', 'en', 'retail', {empty}, :at, :at FROM {series}"),
                     at)
        conn.execute(text("INSERT INTO consents (customer_id, channel, status, source, recorded_at) "
                          "SELECT id, 'email', 'granted', 'checkout', :at FROM customers"), at)
        conn.execute(text("INSERT INTO rules (name, path, definition, checksum, updated_at, enabled, transactional) "
                          f"VALUES ('bench', 'rules/bench.yaml', {empty}, 'x', :at, true, false)"), at)
        conn.execute(text("INSERT INTO messages (rule_id, customer_id, channel, occurrence_key, status, to_address, "
                          "planned_at, sent_at, attempts, cost, redelivered) SELECT (SELECT r.id FROM rules r), c.id, "
                          "'email', 'k', 'sent', c.email, :at, :at, 1, 0, false FROM customers c ORDER BY c.id"), at)
        # A shop's history: an order of one item each, before the run (from empty tables, PostgreSQL's
        # plans chosen for the first orders — foreign-key checks, the triggers' — scanned every order).
        conn.execute(text("INSERT INTO orders (external_id, customer_id, ordered_at, amount, currency, source) "
                          "SELECT 'H' || id, id, :at, 50, 'CNY', 'import' FROM customers ORDER BY id"), at)
        conn.execute(text("INSERT INTO order_items (order_id, sku, category, quantity, amount) "
                          "SELECT id, 'LJ-100', 'tea', 1, 50 FROM orders ORDER BY id"))


@contextmanager
def database(kind: str, messages: int, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        file = folder / "outreach.db"
        url = f"sqlite:///{file}"
        engine = make_engine(url)
        migrate(engine)
        populate(engine, messages)
        engine.dispose()
        try:
            yield url
        finally:
            for leftover in folder.glob("outreach.db*"):  # the database, its WAL, its secret
                leftover.unlink()
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"outreach_webhook_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    populate(engine, messages)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=BENCH, start_new_session=True)
    try:
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", alive=lambda: process.poll() is None,
                               timeout_s=STARTUP_TIMEOUT_S)
        except RuntimeError:
            sys.exit(f"the server did not start: {' '.join(command)}")
        yield
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def wrk(port: int, requests: Path, *, seconds: float, show: Console) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{min(MAX_RUN_S, int(seconds) + 1)}s", "--timeout",
         f"{MAX_RUN_S}s",
         "-s", str(BENCH / "webhook_bench.lua"), f"http://127.0.0.1:{port}", "--", str(requests), str(THREADS)],
        capture_output=True, text=True, check=True)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        show.print(result.stdout, result.stderr)
        sys.exit("wrk printed no result")
    # Lua prints nan/inf (no answer at all, e.g. the server was restarting): JSON's NaN/Infinity.
    spelled = re.sub(r"(-?)(?:nan|inf)\b", lambda m: "NaN" if "nan" in m.group(0) else m.group(1) + "Infinity",
                     line.removeprefix("RESULT "))
    figures: dict[str, float] = json.loads(spelled)
    if not figures["ok"] + figures["bad"]:
        show.print(result.stdout, result.stderr)
        sys.exit(f"no request on port {port} was answered in {seconds:.0f} s: is the server up?")
    figures["rate"] = (figures["ok"] + figures["bad"]) / figures["seconds"] if figures["seconds"] > 0 else 0.0
    return figures


def run(port: int, warm: Path, main: Path, count: int, show: Console,
        between: Callable[[], int] = lambda: 0) -> tuple[dict[str, float], int]:
    """The warm-up, ``between()``, then the measurement (as long as the
    warm-up's rate says it takes): the figures and what ``between`` returned."""
    rate = wrk(port, warm, seconds=WARMUP_S, show=show)["rate"]
    noted = between()
    return wrk(port, main, seconds=count / max(rate, 1.0) * MARGIN + SLACK_S, show=show), noted


def stored(url: str, endpoint: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if endpoint == "orders":
                return conn.scalar(select(func.count()).select_from(Order).where(Order.source == "webhook")) or 0
            kind = EventType.OPEN if endpoint == "open" else EventType.CLICK
            return conn.scalar(select(func.count()).select_from(TrackingEvent).where(TrackingEvent.type == kind)) or 0
    finally:
        engine.dispose()


def measure(endpoint: str, kind: str, args: argparse.Namespace, folder: Path, show: Console) -> dict[str, object]:
    main, warm = folder / f"{endpoint}.txt", folder / f"{endpoint}-warm.txt"
    tag = f"{kind}-{int(time.time())}"
    requests_file(main, endpoint, args.requests, args.messages, tag)
    requests_file(warm, endpoint, max(WARMUP_MIN, int(args.requests * WARMUP_SHARE)), args.messages, tag + "-w")
    uvicorn_opts = ["--host", "127.0.0.1", "--workers", str(args.workers)]
    port = free_port()
    hello = [str(BIN / "uvicorn"), "hello_app:app", "--port", str(port), "--no-access-log",
             "--log-level", "warning", *uvicorn_opts]
    with server(hello, {}, port):
        reference, _ = run(port, warm, main, args.requests, show)
    with database(kind, args.messages, folder) as url:
        port = free_port()
        ours = [str(BIN / "outreach"), "serve", "--port", str(port), *uvicorn_opts]
        env = {"OUTREACH_DATABASE_URL": url, "OUTREACH_SECRET_KEY": SECRET,
               "OUTREACH_ORDER_WEBHOOK_SECRET": ORDER_SECRET, "OUTREACH_LOG_LEVEL": "warning"}
        with server(ours, env, port):
            figures, before = run(port, warm, main, args.requests, show, lambda: stored(url, endpoint))
            time.sleep(0.5)  # nothing should arrive late, but look after the server had time to
            after = stored(url, endpoint)
    return {**figures, "reference": reference["rate"], "stored": after - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", choices=[*ENDPOINTS, "all"], nargs="+", default=["all"])
    parser.add_argument("--db", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per measurement")
    parser.add_argument("--messages", type=int, default=10_000, help="sent messages (and customers) to spread over")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="server processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: install it (Debian: apt-get install wrk)")
    endpoints = ENDPOINTS if "all" in args.endpoint else tuple(args.endpoint)
    kinds = ("postgresql", "sqlite") if args.db == "both" else (args.db,)
    show = Console(width=200)
    table = Table(title=f"Webhook server under wrk, {CONNECTIONS} connections, {args.workers} server processes "
                        f"({datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores)")
    for column in ("endpoint", "db", "requests", "req/s", "p50 ms", "p99 ms", "hello-world req/s", "ratio",
                   "non-2xx", "stored == answered"):
        table.add_column(column, justify="left" if column in ("endpoint", "db", "stored == answered") else "right")
    folder = Path(tempfile.mkdtemp(prefix="outreach-webhook-bench-"))
    try:
        for endpoint in endpoints:
            for kind in kinds:
                show.print(f"{endpoint} on {kind} …")
                r = measure(endpoint, kind, args, folder, show)
                answered, held = int(r["ok"]), int(r["stored"])  # type: ignore[call-overload]
                sent = answered + int(r["bad"])  # type: ignore[call-overload]
                table.add_row(endpoint, "PostgreSQL" if kind == "postgresql" else "SQLite", f"{args.requests:,}",
                              f"{r['rate']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                              f"{r['reference']:,.0f}", f"{r['rate'] / r['reference']:.2f}",  # type: ignore[operator]
                              f"{int(r['bad']):,}" + (f" + {args.requests - sent:,} unanswered" if sent < args.requests
                                                      else ""),  # type: ignore[call-overload]
                              "yes" if answered == held and sent == args.requests
                              else f"NO: {held:,} stored, {answered:,} answered, {sent:,} of the requests sent")
                show.print(table)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    show.print("[dim]req/s = answers per second, from the first request to the last answer; p50/p99 are "
               "wrk's latencies; non-2xx counts requests answered otherwise than 2xx/3xx, and those left unanswered "
               "(the server dropped them, or wrk's run, as long as the warm-up's rate said, ended first: run again "
               "on a quieter machine); "
               "hello-world = bench/hello_app.py under the same "
               "uvicorn options, same script, same requests[/]")


if __name__ == "__main__":
    main()

"""What one group-commit batch of orders costs the writer, without HTTP.

    python bench/order_writes_bench.py                          # 300 batches of 8 on PostgreSQL
    python bench/order_writes_bench.py --batches 500 --batch 16 --coupons

The order webhook on PostgreSQL is limited by its one writer per process
(``outreach.webhooks.batching.GroupCommit``): a batch waits on the
database's round trips. This calls ``outreach.webhooks.orders.store_batch``
— what the writer calls — on a fresh database (``webhook_bench``'s: sent
emails to customers), one batch after another, each of ``--batch``
distinct orders of distinct customers like the webhook bench's, and prints
per batch: the round trips (the pool's liveness ping, BEGIN, each
statement, COMMIT — counted with SQLAlchemy events), the time in
statements and the whole batch (client side: PostgreSQL's time plus the
wire), and per order. ``--coupons`` gives every other order a coupon code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, event

from outreach.store.engine import make_engine
from outreach.webhooks.orders import OrderIn, _Delivery, store_batch
from webhook_bench import database  # bench/webhook_bench.py, beside this script


class Counter:
    """Statements, transactions and pings on ``engine``, and the time in statements."""

    def __init__(self, engine: Engine) -> None:
        self.statements = self.begins = self.commits = self.pings = 0
        self.statement_s = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)

    def _before(self, *_: Any) -> None:
        self.statements += 1
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.statement_s += time.perf_counter() - self._started

    def _begin(self, *_: Any) -> None:
        self.begins += 1

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def _checkout(self, *_: Any) -> None:
        self.pings += 1  # pool_pre_ping: one round trip per checkout

    def round_trips(self) -> int:
        return self.pings + self.begins + self.statements + self.commits


def batch_of(size: int, start: int, customers: int, coupons: bool) -> list[_Delivery]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return [_Delivery(order=OrderIn.model_validate(
        {"external_id": f"B-{k}", "customer_id": f"C{k % customers + 1}", "ordered_at": now, "amount": "88.00",
         "coupon_code": f"CODE{k}" if coupons and k % 2 else None,
         "items": [{"sku": "LJ-100", "category": "tea", "amount": "88.00"}]}, context={"now": now}),
        signed_at=now) for k in range(start, start + size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches measured (after 30 of warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="orders per batch (8: the webhook bench's)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--coupons", action="store_true", help="every other order carries a coupon code")
    args = parser.parse_args()
    show = Console(width=160)
    with tempfile.TemporaryDirectory() as folder, database("postgresql", args.customers, Path(folder)) as url:
        engine = make_engine(url)
        k = 0
        for _ in range(30):  # warm-up: connections, prepared statements, caches
            store_batch(engine, batch_of(args.batch, k, args.customers, args.coupons))
            k += args.batch
        counter = Counter(engine)
        took: list[float] = []
        for _ in range(args.batches):
            batch = batch_of(args.batch, k, args.customers, args.coupons)
            k += args.batch
            started = time.perf_counter()
            store_batch(engine, batch)
            took.append(time.perf_counter() - started)
            assert all(d.answer is not None for d in batch)
        engine.dispose()
    n, size = args.batches, args.batch
    table = Table(title=f"store_batch on PostgreSQL: {n} batches of {size} orders"
                        f"{' (half with a coupon code)' if args.coupons else ''}, one after another")
    for column in ("round trips / batch", "statements / batch", "in statements ms / batch", "batch ms (p50)",
                   "batch ms (mean)", "ms / order", "orders/s, one writer"):
        table.add_column(column, justify="right")
    mean = statistics.fmean(took)
    table.add_row(f"{counter.round_trips() / n:.1f}", f"{counter.statements / n:.1f}",
                  f"{counter.statement_s / n * 1000:.2f}", f"{statistics.median(took) * 1000:.2f}",
                  f"{mean * 1000:.2f}", f"{mean / size * 1000:.2f}", f"{size / mean:,.0f}")
    show.print(table)


if __name__ == "__main__":
    main()

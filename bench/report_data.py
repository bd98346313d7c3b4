"""The report benchmark's database: a shop after a year of campaigns, made in SQL.

Every row is generated set-based (``INSERT … SELECT`` from ``generate_series``),
its "random" choices hashes of the row number (``hashint8extended``), so two
builds of the same sizes hold the same data. The schema is the real one
(``outreach.store.engine.migrate``); ``customer_stats`` is refreshed by
``outreach.store.stats.refresh``, as the product does.

The build is a list of steps, each one transaction, recorded in
``bench_build`` when it commits: an interrupted build resumes at the step it
was in (that step's partial work rolled back with it). A database built for
other sizes is dropped and built again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, Table, create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from outreach.store import stats
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Message, Order

#: The moment the report is asked for; messages were planned over the year before.
NOW = datetime(2026, 12, 1, 8, 0)
#: The rules that sent the messages: (name, channel mix, A/B variants, gives a coupon).
RULES = [("bench-welcome", False, False), ("bench-winback", True, False), ("bench-birthday", False, True),
         ("bench-upsell", True, True), ("bench-reorder", False, False), ("bench-vip", False, False),
         ("bench-cart", False, False), ("bench-news", False, False)]
#: Shares of messages by status (the rest are sent).
HELD_OUT, SKIPPED, FAILED = 0.10, 0.04, 0.01
#: Shares of sent messages opened and clicked, and of coupons redeemed.
OPENED, CLICKED, REDEEMED = 0.25, 0.06, 0.08
#: Orders in the second currency, and its rate in the first (the report converts with a CASE).
USD_SHARE, USD_RATE = 0.12, "7.10"
BUILD_WORK_MEM, BUILD_MAINTENANCE_MEM = "256MB", "1GB"


def u(key: str, seed: int) -> str:
    """A uniform float in [0, 1) from the integer expression ``key`` (a hash, not random())."""
    return f"((hashint8extended(({key})::bigint, {seed}) & 2147483647)::float8 / 2147483648.0)"


@dataclass(frozen=True)
class Sizes:
    customers: int
    orders_per_customer: int
    messages: int

    @property
    def orders(self) -> int:
        return self.customers * self.orders_per_customer

    def key(self) -> str:
        return f"{self.customers}/{self.orders_per_customer}/{self.messages}"


def _days_before_now(days: str) -> str:
    return f"(TIMESTAMP '{NOW:%Y-%m-%d %H:%M:%S}' - ({days}) * INTERVAL '1 day')"


def _customers(conn: Connection, s: Sizes) -> None:
    conn.execute(text(f"""
        INSERT INTO customers (id, external_id, name, email, phone, timezone, locale, customer_type, attributes,
                               created_at, updated_at)
        SELECT g, 'C' || g, 'Customer ' || g, 'c' || g || '@example.com', '+86138' || lpad(g::text, 8, '0'),
               'Asia/Shanghai', CASE WHEN g % 7 < 3 THEN 'zh_CN' WHEN g % 7 = 3 THEN 'de' ELSE 'en' END,
               CASE WHEN g % 20 = 0 THEN 'distributor' WHEN g % 10 = 0 THEN 'business' ELSE 'retail' END,
               '{{}}'::json, {_days_before_now("(g % 900) + 400")}, {_days_before_now("0")}
        FROM generate_series(1::bigint, {s.customers}::bigint) AS g"""))


def _orders(conn: Connection, s: Sizes) -> None:
    """Orders over two years; customer = N·u·v puts most orders on few customers (80/20)."""
    table = cast(Table, Order.__table__)
    for index in table.indexes:  # one sort per index after the load, not 10M insertions each
        index.drop(conn)
    conn.execute(text(f"""
        INSERT INTO orders (id, external_id, customer_id, ordered_at, amount, currency, source)
        SELECT g, 'O' || g, 1 + floor({s.customers} * {u('g', 1)} * {u('g', 2)})::bigint,
               {_days_before_now(f"{u('g', 3)} * 730")}, round((20 + {u('g', 4)} * 400)::numeric, 2),
               CASE WHEN {u('g', 5)} < {USD_SHARE} THEN 'USD' ELSE 'CNY' END, 'bench'
        FROM generate_series(1::bigint, {s.orders}::bigint) AS g"""))
    for index in table.indexes:
        index.create(conn)


def _rules(conn: Connection, s: Sizes) -> None:
    for name, *_ in RULES:
        rule_id = conn.execute(text(
            "INSERT INTO rules (name, path, definition, checksum, updated_at, assignment) "
            "VALUES (:n, 'bench', '{}', 'bench', :t, 'sha256') RETURNING id"), {"n": name, "t": NOW}).scalar_one()
        conn.execute(text("INSERT INTO campaign_runs (rule_id, as_of, started_at, finished_at, planned, held_out) "
                          "VALUES (:r, :t, :t, :t, 0, 0)"), {"r": rule_id, "t": NOW})


def _messages(conn: Connection, s: Sizes) -> None:
    """Messages of the 8 rules over the last year: sent, held out, skipped, failed; A/B on some rules."""
    table = cast(Table, Message.__table__)
    for index in table.indexes:
        index.drop(conn)
    ab = ", ".join(str(k) for k, (_, _, variants) in enumerate(RULES) if variants) or "-1"
    sms = ", ".join(str(k) for k, (_, mixed, _) in enumerate(RULES) if mixed) or "-1"
    conn.execute(text(f"""
        WITH m AS (
            SELECT g, g % {len(RULES)} AS k, 1 + floor({s.customers} * {u('g', 11)})::bigint AS customer_id,
                   CASE WHEN {u('g', 12)} < {HELD_OUT} THEN 'held_out'
                        WHEN {u('g', 12)} < {round(HELD_OUT + SKIPPED, 6)} THEN 'skipped'
                        WHEN {u('g', 12)} < {round(HELD_OUT + SKIPPED + FAILED, 6)} THEN 'failed'
                        ELSE 'sent' END AS status,
                   {_days_before_now(f"{u('g', 13)} * 365")} AS planned_at,
                   (7 + g % 24) * INTERVAL '1 day' AS span
            FROM generate_series(1::bigint, {s.messages}::bigint) AS g),
        r AS (SELECT row_number() OVER (ORDER BY rules.id) - 1 AS k, rules.id AS rule_id, campaign_runs.id AS run_id
              FROM rules JOIN campaign_runs ON campaign_runs.rule_id = rules.id WHERE rules.path = 'bench')
        INSERT INTO messages (id, rule_id, run_id, customer_id, channel, occurrence_key, status, to_address,
                              planned_at, queued_at, sent_at, finished_at, attempts, cost, attribute_until,
                              provider_id, variant)
        SELECT g, r.rule_id, r.run_id, customer_id, ch.channel, 'bench:' || g, status,
               'c' || customer_id || '@example.com', planned_at,
               CASE WHEN status <> 'held_out' THEN planned_at END,
               CASE WHEN status = 'sent' THEN planned_at + INTERVAL '10 minutes' END,
               CASE WHEN status IN ('sent', 'skipped', 'failed') THEN planned_at + INTERVAL '10 minutes' END,
               CASE WHEN status = 'held_out' THEN 0 ELSE 1 END,
               CASE WHEN status <> 'sent' THEN 0 WHEN ch.channel = 'sms' THEN 0.05 ELSE 0.001 END,
               CASE WHEN status = 'sent' THEN planned_at + INTERVAL '10 minutes' + span
                    WHEN status = 'held_out' THEN planned_at + span END,
               CASE WHEN status = 'sent' THEN 'p' || g END,
               CASE WHEN m.k IN ({ab}) AND status <> 'held_out' THEN
                    CASE WHEN {u('g', 14)} < 0.5 THEN 'A' ELSE 'B' END END
        FROM m JOIN r USING (k)
        CROSS JOIN LATERAL (SELECT CASE WHEN m.k IN ({sms}) AND {u('g', 15)} < 0.4 THEN 'sms'
                                        ELSE 'email' END AS channel) AS ch"""))
    for index in table.indexes:
        index.create(conn)
    conn.execute(text("SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))"))


def _events(conn: Connection, s: Sizes) -> None:
    """Opens and clicks for a share of the sent messages (a click is opened first), a few unsubscribes."""
    for kind, share, seed in (("open", OPENED, 21), ("click", CLICKED, 21), ("unsubscribe", 0.003, 23)):
        conn.execute(text(f"""
            INSERT INTO tracking_events (type, message_id, customer_id, occurred_at, source, simulated, payload)
            SELECT '{kind}', id, customer_id, sent_at + INTERVAL '2 hours', 'bench', false, '{{}}'::json
            FROM messages WHERE status = 'sent' AND {u('id', seed)} < {share}"""))


def _coupons(conn: Connection, s: Sizes) -> None:
    """A code for every sent message of the coupon rules; a share redeemed by an order carrying it."""
    offers = ", ".join(f"'{name}'" for name, _, coupon in RULES if coupon)
    pool = conn.execute(text("INSERT INTO coupon_pools (name, created_at) VALUES ('bench', :t) RETURNING id"),
                        {"t": NOW}).scalar_one()
    conn.execute(text(f"""
        INSERT INTO coupons (pool_id, code, source, added_at, message_id, given_at, percent_off)
        SELECT {pool}, 'K' || m.id, 'generated', m.sent_at, m.id, m.sent_at, 10
        FROM messages m JOIN rules ON rules.id = m.rule_id
        WHERE rules.name IN ({offers}) AND m.status = 'sent'"""))
    conn.execute(text(f"""
        INSERT INTO orders (id, external_id, customer_id, ordered_at, amount, currency, coupon_code, source)
        SELECT {s.orders} + m.id, 'OK' || m.id, m.customer_id,
               least(c.given_at + {u('m.id', 31)} * 6 * INTERVAL '1 day', TIMESTAMP '{NOW:%Y-%m-%d %H:%M:%S}'),
               round((30 + {u('m.id', 32)} * 300)::numeric, 2), 'CNY', c.code, 'bench'
        FROM coupons c JOIN messages m ON m.id = c.message_id WHERE {u('m.id', 33)} < {REDEEMED}"""))
    conn.execute(text(f"""
        INSERT INTO coupon_redemptions (coupon_id, order_id, message_id, ordered_at, amount, currency, discount,
                                        discount_currency, discount_source, duplicate, recorded_at)
        SELECT c.id, o.id, c.message_id, o.ordered_at, o.amount, o.currency, round(o.amount * 10 / 90, 2),
               o.currency, 'offer', false, TIMESTAMP '{NOW:%Y-%m-%d %H:%M:%S}'
        FROM orders o JOIN coupons c ON c.code = o.coupon_code WHERE o.id > {s.orders}"""))


def _stats(conn: Connection, s: Sizes) -> None:
    with Session(bind=conn) as session:
        stats.refresh(session, now=NOW)


STEPS: list[tuple[str, Callable[[Connection, Sizes], None]]] = [
    ("customers", _customers), ("orders", _orders), ("rules", _rules), ("messages", _messages),
    ("events", _events), ("coupons", _coupons), ("customer_stats", _stats)]


def _admin(url: str) -> Engine:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def _built_for(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not conn.scalar(text("SELECT to_regclass('bench_build') IS NOT NULL")):
            return None
        return conn.scalar(text("SELECT detail FROM bench_build WHERE step = 'sizes'"))


def ensure(url: str, sizes: Sizes, *, rebuild: bool, say: Callable[[str], None]) -> tuple[Engine, float]:
    """The database of ``sizes`` at ``url`` (built, resumed or reused); the seconds spent building."""
    name = make_url(url).database
    admin = _admin(url)
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    engine = make_engine(url) if exists else None
    found = _built_for(engine) if engine is not None else None
    if engine is not None and (rebuild or (found is not None and found != sizes.key())):
        say(f"dropping {name} (built for {found or 'nothing'}, asked for {sizes.key()})")
        engine.dispose()
        engine = None
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    if engine is None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine = make_engine(url)
    admin.dispose()
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_build (step text PRIMARY KEY, detail text, "
                          "seconds float8)"))
        conn.execute(text("INSERT INTO bench_build VALUES ('sizes', :k, 0) ON CONFLICT DO NOTHING"),
                     {"k": sizes.key()})
        done = set(conn.scalars(text("SELECT step FROM bench_build")))
    spent = 0.0
    for step, build in STEPS:
        if step in done:
            continue
        say(f"building {step} …")
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL work_mem = '{BUILD_WORK_MEM}'"))
            conn.execute(text(f"SET LOCAL maintenance_work_mem = '{BUILD_MAINTENANCE_MEM}'"))
            build(conn, sizes)
            seconds = time.perf_counter() - started
            conn.execute(text("INSERT INTO bench_build VALUES (:s, 'done', :t)"), {"s": step, "t": seconds})
        spent += seconds
        say(f"  {step}: {seconds:.1f} s")
    if "vacuum" not in done:
        started = time.perf_counter()
        # Planner statistics and a visibility map (index-only scans), and the
        # load written back to disk now rather than during the measurements.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
            seconds = time.perf_counter() - started
            conn.execute(text("INSERT INTO bench_build VALUES ('vacuum', 'done', :t)"), {"t": seconds})
        spent += seconds
        say(f"  vacuum analyze: {seconds:.1f} s")
    return engine, spent

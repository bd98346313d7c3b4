"""Generate a large synthetic customer base *inside* the database.

Set-based INSERT … SELECT from a number series (PostgreSQL generate_series,
SQLite a recursive CTE), so 1,000,000 customers and 10,000,000 orders take
minutes, not hours. Orders are skewed (a minority of customers places most
of them, as the 80/20 rule says); every rule shipped in rules/ has work to do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text

#: Share of customers with each consent.
EMAIL_CONSENT_PCT = 85
SMS_CONSENT_PCT = 45
SKUS = [("LJ-100", "tea"), ("PE-357", "tea"), ("TGY-250", "tea"), ("DHP-200", "tea"),
        ("JAS-100", "tea"), ("YX-POT", "teaware"), ("CUP-SET", "teaware"), ("MOON-CK", "snacks")]


def _series(dialect: str, n: int) -> str:
    if dialect == "postgresql":
        return f"generate_series(1::bigint, {n}::bigint) AS s(g)"
    return f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s) AS s"


def _ts(dialect: str, now: datetime, days_expr: str) -> str:
    """``now`` minus ``days_expr`` days (a float SQL expression)."""
    if dialect == "postgresql":
        return f"(TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' - ({days_expr}) * INTERVAL '1 day')"
    return f"datetime('{now:%Y-%m-%d %H:%M:%S}', '-' || ({days_expr}) || ' days')"


def _rand(dialect: str) -> str:
    """A uniform random float in [0, 1)."""
    return "random()" if dialect == "postgresql" else "((random() / 18446744073709551616.0) + 0.5)"


def _analyze(engine: Engine, table: str = "") -> None:
    """Fresh planner statistics (and, on PostgreSQL, a visibility map) after a
    bulk load; on PostgreSQL also a checkpoint, so that writing the load's
    gigabytes back to disk is not done during the measurements that follow
    (a base that grew over months has no such backlog)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {table}"))
            conn.execute(text("CHECKPOINT"))
    else:
        with engine.begin() as conn:
            conn.execute(text(f"ANALYZE {table}"))


def generate(engine: Engine, *, customers: int, orders: int, now: datetime) -> None:
    d = engine.dialect.name
    r = _rand(d)
    zones = ("ARRAY['Asia/Shanghai','Asia/Shanghai','Asia/Shanghai','Europe/London','America/New_York',"
             "'America/Los_Angeles','Australia/Sydney']")
    if d == "postgresql":
        tz = f"({zones})[1 + (g % 7)]"
        lpad = "lpad(g::text, 9, '0')"
        bday = "(DATE '1950-01-01' + ((g * 7919) % 20000)::int)"
        month, day = f"EXTRACT(MONTH FROM {bday})::int", f"EXTRACT(DAY FROM {bday})::int"
        attrs = "'{}'::json"
    else:
        tz = ("CASE g % 7 WHEN 3 THEN 'Europe/London' WHEN 4 THEN 'America/New_York' "
              "WHEN 5 THEN 'America/Los_Angeles' WHEN 6 THEN 'Australia/Sydney' ELSE 'Asia/Shanghai' END")
        lpad = "substr('000000000' || g, -9, 9)"
        bday = "date('1950-01-01', '+' || ((g * 7919) % 20000) || ' days')"
        month, day = f"CAST(strftime('%m', {bday}) AS INTEGER)", f"CAST(strftime('%d', {bday}) AS INTEGER)"
        attrs = "'{}'"
    with engine.begin() as conn:
        conn.execute(text(f"""
            INSERT INTO customers (id, external_id, name, email, phone, birthday, birth_month, birth_day,
                                   timezone, locale, customer_type, attributes, created_at, updated_at)
            SELECT g, 'C' || {lpad}, 'Customer ' || g, 'c' || g || '@example.com', '+86138' || {lpad},
                   {bday}, {month}, {day}, {tz},
                   CASE WHEN g % 7 < 3 THEN 'zh_CN' ELSE 'en' END,
                   CASE WHEN g % 20 = 0 THEN 'distributor' WHEN g % 10 = 0 THEN 'business' ELSE 'retail' END,
                   {attrs}, {_ts(d, now, "(g % 900) + 30")}, {_ts(d, now, "0")}
            FROM {_series(d, customers)}"""))
        # Orders: customer = N·u² skews most orders onto few customers (80/20).
        conn.execute(text(f"""
            INSERT INTO orders (id, external_id, customer_id, ordered_at, amount, currency, source)
            SELECT g, 'O' || g, 1 + CAST({customers} * ({r}) * ({r}) AS INTEGER) % {customers},
                   {_ts(d, now, f"({r}) * 730")}, CAST(20 + ({r}) * 400 AS NUMERIC(14, 2)), 'CNY', 'bench'
            FROM {_series(d, orders)}"""))
        cases = " ".join(f"WHEN {i} THEN '{sku}'" for i, (sku, _) in enumerate(SKUS))
        cats = " ".join(f"WHEN {i} THEN '{cat}'" for i, (_, cat) in enumerate(SKUS))
        conn.execute(text(f"""
            INSERT INTO order_items (id, order_id, sku, category, quantity, amount)
            SELECT id, id, CASE id % {len(SKUS)} {cases} END, CASE id % {len(SKUS)} {cats} END, 1, amount
            FROM orders"""))
        conn.execute(text(f"""
            INSERT INTO consents (customer_id, channel, status, source, evidence, recorded_at)
            SELECT id, 'email', 'granted', 'bench', 'synthetic', created_at FROM customers
            WHERE id % 100 < {EMAIL_CONSENT_PCT}"""))
        conn.execute(text(f"""
            INSERT INTO consents (customer_id, channel, status, source, evidence, recorded_at)
            SELECT id, 'sms', 'granted', 'bench', 'synthetic', created_at FROM customers
            WHERE (id * 7) % 100 < {SMS_CONSENT_PCT}"""))
    _analyze(engine)


#: The rule that "sent" the synthetic outbox history (never a shipped rule's name).
HISTORY_RULE = "bench-history"


def outbox_history(engine: Engine, *, messages: int, customers: int, now: datetime) -> None:
    """A year of earlier sends: ``messages`` sent emails spread over the base
    and over the last 365 days, as an outbox looks after months in use. Every
    cooldown and frequency-cap look-up then reads through real history."""
    d = engine.dialect.name
    r = _rand(d)
    with engine.begin() as conn:
        rule_id = conn.execute(text(
            "INSERT INTO rules (name, path, definition, checksum, updated_at) "
            "VALUES (:n, 'bench', '{}', 'bench', :t) RETURNING id"), {"n": HISTORY_RULE, "t": now}).scalar_one()
        run_id = conn.execute(text(
            "INSERT INTO campaign_runs (rule_id, as_of, started_at, finished_at, planned, held_out) "
            "VALUES (:r, :t, :t, :t, :m, 0) RETURNING id"), {"r": rule_id, "t": now, "m": messages}).scalar_one()
        customer = f"(1 + (g * 7919) % {customers})"
        sent_at = _ts(d, now, f"({r}) * 365")
        conn.execute(text(f"""
            INSERT INTO messages (rule_id, run_id, customer_id, channel, occurrence_key, status, to_address,
                                  planned_at, queued_at, sent_at, finished_at, attempts, cost, provider_id)
            SELECT {rule_id}, {run_id}, customer_id, 'email', 'history:' || g, 'sent',
                   'c' || customer_id || '@example.com', sent_at, sent_at, sent_at, sent_at, 1, 0.01,
                   'history-' || g
            FROM (SELECT g, {customer} AS customer_id, {sent_at} AS sent_at FROM {_series(d, messages)}) AS h"""))
    _analyze(engine, "messages")

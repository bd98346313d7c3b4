"""A shop where every customer is due one email: the send benchmark's data.

N customers with an address and email consent, each with one order 100
days ago, so one inactivity rule (``RULE``) plans exactly N messages.
Half write in English, half in Chinese, so both template variants render.
Written set-based inside the database (a number series), like ``synth``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from synth import _analyze, _series  # bench/synth.py

RULE = """
name: send-bench
description: every customer who has not ordered for 90 days
trigger: {type: inactivity, days: 90}
template: winback
channels: [email]
cooldown_days: 0
cost: {email: 0.001}
"""


def generate(engine: Engine, *, customers: int, now: datetime) -> None:
    d = engine.dialect.name
    series = _series(d, customers)
    created = now - timedelta(days=400)
    ordered = now - timedelta(days=100)
    ext = "'B' || lpad(g::text, 9, '0')" if d == "postgresql" else "'B' || substr('000000000' || g, -9)"
    locale = "CASE WHEN g % 2 = 0 THEN 'zh_CN' ELSE 'en' END"
    name = "CASE WHEN g % 2 = 0 THEN '王小明' ELSE 'Ada Lovelace ' || g END"
    empty_json = "'{}'::json" if d == "postgresql" else "'{}'"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO customers (id, external_id, name, email, phone, timezone, locale, customer_type, "
            "attributes, created_at, updated_at) "
            f"SELECT g, {ext}, {name}, 'c' || g || '@bench.example', NULL, 'Asia/Shanghai', {locale}, 'retail', "
            f"{empty_json}, :created, :created FROM {series}"), {"created": created})
        conn.execute(text(
            "INSERT INTO consents (customer_id, channel, status, source, recorded_at) "
            f"SELECT g, 'email', 'granted', 'checkout', :created FROM {series}"), {"created": created})
        conn.execute(text(
            "INSERT INTO orders (id, external_id, customer_id, ordered_at, amount, currency, source) "
            f"SELECT g, 'BO' || g, g, :ordered, 88, 'CNY', 'import' FROM {series}"), {"ordered": ordered})
    _analyze(engine)

"""The report's numbers against an independent count in plain Python, on
random shops: two rules (one with A/B variants), sent, held-out, skipped and
failed messages, customers messaged twice, orders in CNY, USD (with a rate)
and JPY (without), coupon codes redeemed — on SQLite and PostgreSQL.

The oracle below reads only the rows the test wrote; it shares nothing with
the report but the interval formulas of ``outreach.stats`` (given the
oracle's own counts and sums)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from factories import NOW, add_customer
from outreach.domain import Channel, CustomerType, MessageStatus
from outreach.reporting.document import document
from outreach.reporting.money import Money
from outreach.stats import Sums, mean_difference, rate_difference
from outreach.store.engine import transaction
from outreach.store.models import Message
from report_helpers import add_order, add_rule, give_code, record_redemptions

RATES = {"CNY": Decimal(1), "USD": Decimal("7.10")}
CENT = Decimal("0.01")
AS_OF = NOW + timedelta(days=15)  # some windows are still open
FIXED = {"plain": Decimal("300"), "ab": Decimal("0")}
MARGIN = {"plain": Decimal("0.4"), "ab": Decimal("1")}


@dataclass
class Msg:
    id: int
    rule: str
    customer: int
    status: MessageStatus
    variant: str | None
    channel: str
    planned: datetime
    sent: datetime | None
    until: datetime
    cost: Decimal


@dataclass
class Ord:
    id: int
    customer: int
    at: datetime
    amount: Decimal
    currency: str
    code: str | None
    discount: Decimal | None


def _shop(engine: Engine, seed: int) -> tuple[list[Msg], list[Ord], dict[int, dict[str, str]], dict[str, int]]:
    rnd = random.Random(seed)
    msgs: list[Msg] = []
    orders: list[Ord] = []
    customers: dict[int, dict[str, str]] = {}
    codes: dict[str, int] = {}  # code → message id
    with transaction(engine) as s:
        rules = {"plain": add_rule(s, "plain", fixed_cost=str(FIXED["plain"]), margin=str(MARGIN["plain"])),
                 "ab": add_rule(s, "ab", variants=[{"name": "A", "weight": 50}, {"name": "B", "weight": 50}])}
        people = []
        for n in range(90):
            kind = rnd.choice(list(CustomerType))
            locale = rnd.choice(["zh_CN", "en"])
            c = add_customer(s, f"r{seed}-{n}", customer_type=kind, locale=locale)
            customers[c.id] = {"customer_type": kind.value, "locale": locale}
            people.append(c)
        for n, c in enumerate(people):
            for k in range(rnd.choice([1, 1, 2])):  # some customers hear from a rule twice, or from both
                name = rnd.choice(["plain", "ab"])
                status = rnd.choices([MessageStatus.SENT, MessageStatus.HELD_OUT, MessageStatus.SKIPPED,
                                      MessageStatus.FAILED], [6, 3, 1, 1])[0]
                planned = NOW + timedelta(days=rnd.randint(0, 12), hours=rnd.randint(0, 23))
                sent = planned + timedelta(minutes=rnd.randint(0, 90)) if status is MessageStatus.SENT else None
                until = (sent or planned) + timedelta(days=rnd.choice([3, 7]))
                variant = rnd.choice(["A", "B"]) if name == "ab" and status is not MessageStatus.HELD_OUT else None
                channel = rnd.choice([Channel.EMAIL, Channel.SMS])
                cost = Decimal(rnd.choice(["0.05", "0.30"])) if status is MessageStatus.SENT else Decimal(0)
                row = Message(rule_id=rules[name].id, customer_id=c.id, channel=channel, occurrence_key=f"{n}-{k}",
                              status=status, planned_at=planned, sent_at=sent, attribute_until=until, cost=cost,
                              variant=variant, attempts=0)
                s.add(row)
                s.flush()
                msgs.append(Msg(row.id, name, c.id, status, variant, channel.value, planned, sent, until, cost))
                if name == "plain" and status is MessageStatus.SENT and rnd.random() < 0.5:
                    code = f"S{seed}C{row.id}"
                    give_code(s, row, code)
                    codes[code] = row.id
        written = []
        given = list(codes)
        for c in people:
            for _ in range(rnd.choice([0, 1, 1, 2, 3])):
                at = NOW + timedelta(days=rnd.randint(-2, 22), hours=rnd.randint(0, 23))
                currency = rnd.choices(["CNY", "USD", "JPY"], [6, 3, 1])[0]
                amount = Decimal(rnd.randint(100, 99999)) / 100
                code = rnd.choice(given) if given and rnd.random() < 0.25 else None
                discount = Decimal(rnd.randint(1, 500)) / 100 if code and rnd.random() < 0.5 else None
                order = add_order(s, c, at, amount, currency=currency,
                                  coupon=code, discount=None if discount is None else str(discount))
                written.append(order)
                orders.append(Ord(order.id, c.id, at, amount, currency, code, discount))
        record_redemptions(s, written)
    return msgs, orders, customers, codes


def _measured(m: Msg) -> bool:
    return m.status in (MessageStatus.SENT, MessageStatus.HELD_OUT)


def _inside(m: Msg, o: Ord) -> bool:
    start = m.sent if m.status is MessageStatus.SENT else m.planned
    assert start is not None
    return o.customer == m.customer and start < o.at <= m.until


class Cell:
    def __init__(self) -> None:
        self.n, self.converted, self.revenue, self.squares, self.open = 0, 0, Decimal(0), Decimal(0), 0

    def add(self, m: Msg, orders: list[Ord]) -> None:
        mine = [o for o in orders if o.currency in RATES and _inside(m, o)]
        spent = sum((o.amount * RATES[o.currency] for o in mine), Decimal(0))
        self.n += 1
        self.converted += bool(mine)
        self.revenue += spent
        self.squares += spent * spent
        self.open += m.until > AS_OF


def _money_close(text: str, expected: Decimal) -> None:
    assert abs(Decimal(text) - expected) <= CENT, (text, expected)


def _interval_close(found: dict[str, float] | None, expected: Any) -> None:
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found["estimate"], found["low"], found["high"]) == pytest.approx(
        (expected.estimate, expected.low, expected.high), rel=1e-6, abs=1e-6)


def _compare(found: dict[str, Any], treated: Cell, control: Cell) -> None:
    for side, cell in (("treated", treated), ("control", control)):
        assert (found[side]["customers"], found[side]["converted"]) == (cell.n, cell.converted)
        _money_close(found[side]["revenue"], cell.revenue)
    rate = rate_difference(treated.converted, treated.n, control.converted, control.n)
    per = mean_difference(Sums(treated.n, float(treated.revenue), float(treated.squares)),
                          Sums(control.n, float(control.revenue), float(control.squares)))
    enough = treated.n >= 2 and control.n >= 2
    _interval_close(found["lift"]["conversion_pp"], rate.scaled(100) if rate and enough else None)
    _interval_close(found["lift"]["revenue_per_customer"], per if enough else None)
    _interval_close(found["lift"]["incremental_revenue"], per.scaled(treated.n) if per and enough else None)


@pytest.mark.parametrize("seed", [3, 11])
def test_the_report_agrees_with_a_plain_python_count(engine: Engine, seed: int) -> None:
    msgs, orders, customers, codes = _shop(engine, seed)
    doc = document(engine, money=Money("CNY", {"USD": Decimal("7.10")}), now=AS_OF)
    # --- arms, per rule and per variant
    arms: dict[tuple[str, str | None, bool], Cell] = defaultdict(Cell)
    treated: dict[str, Cell] = defaultdict(Cell)
    for m in msgs:
        if _measured(m):
            held = m.status is MessageStatus.HELD_OUT
            arms[(m.rule, m.variant, held)].add(m, orders)
            if not held:
                treated[m.rule].add(m, orders)
    # --- discounts (redemptions: the first order carrying a code, dated no earlier than its giving)
    by_id = {m.id: m for m in msgs}
    discount: dict[str, Decimal] = defaultdict(Decimal)
    redeemed: dict[str, int] = defaultdict(int)
    for code, message_id in codes.items():
        m = by_id[message_id]
        uses = sorted((o for o in orders if o.code == code and m.sent and o.at >= m.sent), key=lambda o: (o.at, o.id))
        for k, o in enumerate(uses):
            if o.currency not in RATES:
                continue
            given = o.discount if o.discount is not None else (o.amount * 10 / 90).quantize(CENT, ROUND_HALF_UP)
            discount[m.rule] += given * RATES[o.currency]
            redeemed[m.rule] += k == 0
    # --- last touch
    touch: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for o in orders:
        if o.currency not in RATES:
            continue
        hits = [m for m in msgs if m.status is MessageStatus.SENT and m.customer == o.customer
                and m.sent is not None and m.sent < o.at <= m.until]
        if hits:
            last = max(hits, key=lambda m: (m.sent, m.id))
            touch[last.rule][0] += 1
            touch[last.rule][1] += o.amount * RATES[o.currency]
    for name in ("plain", "ab"):
        r = next(x for x in doc["rules"] if x["rule"] == name)
        mine = [m for m in msgs if m.rule == name]
        control = arms[(name, None, True)]
        _compare(r, treated[name], control)
        sent = [m for m in mine if m.status is MessageStatus.SENT]
        assert r["funnel"] == {**r["funnel"], "planned": len(mine), "sent": len(sent),
                               "held_out": sum(m.status is MessageStatus.HELD_OUT for m in mine),
                               "skipped": sum(m.status is MessageStatus.SKIPPED for m in mine),
                               "failed": sum(m.status is MessageStatus.FAILED for m in mine)}
        cost = sum((m.cost for m in sent), Decimal(0)) + FIXED[name] + discount[name]
        _money_close(r["cost"]["total"], cost)
        _money_close(r["cost"]["discounts"], discount[name])
        assert r["open_windows"] == treated[name].open + control.open
        assert r["last_touch"]["conversions"] == touch[name][0]
        _money_close(r["last_touch"]["revenue"], touch[name][1])
        per = mean_difference(Sums(treated[name].n, float(treated[name].revenue), float(treated[name].squares)),
                              Sums(control.n, float(control.revenue), float(control.squares)))
        if per is not None and cost:
            roi = per.scaled(treated[name].n).scaled(float(MARGIN[name] / cost), -1.0)
            _interval_close(r["lift"]["incremental_roi"], roi)
        if name == "plain":
            assert (r["offers"]["codes_given"], r["offers"]["redemptions"]) == (len(codes), redeemed["plain"])
        for v in r["variants"]:
            _compare({**v, "control": r["control"]}, arms[(name, v["variant"], False)], control)
        assert [v["variant"] for v in r["variants"]] == (["A", "B"] if name == "ab" else [])
    # --- splits
    for dimension in ("channel", "customer_type", "locale"):
        cells: dict[tuple[str, str, bool], Cell] = defaultdict(Cell)
        for m in msgs:
            if _measured(m):
                value = m.channel if dimension == "channel" else customers[m.customer][dimension]
                cells[(m.rule, value, m.status is MessageStatus.HELD_OUT)].add(m, orders)
        entries = doc["splits"][dimension]
        assert {(e["rule"], e["value"]) for e in entries} == {(r, v) for r, v, _ in cells}
        for e in entries:
            _compare(e, cells[(e["rule"], e["value"], False)], cells[(e["rule"], e["value"], True)])
    assert any(r["open_windows"] for r in doc["rules"])  # some windows still open: counted, said
    # --- timeline and orders left out
    days: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    jpy: dict[int, Ord] = {}
    for o in orders:
        groups = {(m.rule, "control" if m.status is MessageStatus.HELD_OUT else "treated")
                  for m in msgs if _measured(m) and _inside(m, o)}
        if groups and o.currency not in RATES:
            jpy[o.id] = o
        if o.currency in RATES:
            for rule, side in groups:
                days[(o.at.date().isoformat(), rule, side)][0] += 1
                days[(o.at.date().isoformat(), rule, side)][1] += o.amount * RATES[o.currency]
    assert {(d["date"], d["rule"], d["group"]): d["orders"] for d in doc["timeline"]} == {
        k: v[0] for k, v in days.items()}
    for d in doc["timeline"]:
        _money_close(d["revenue"], days[(d["date"], d["rule"], d["group"])][1])
    assert doc["unconverted"] == ([{"currency": "JPY", "orders": len(jpy),
                                    "amount": str(sum((o.amount for o in jpy.values()), Decimal(0)).quantize(CENT))}]
                                  if jpy else [])

"""RFM scores and the value tier, as a marketer reads them: on any base of
buyers — ties on recency, frequency and revenue included, orders older than
12 months and orders after the evaluation moment too — each score is the
customer's fifth (``ntile(5)``) of the buyers ordered by that figure, ties
split by customer id, and ``vip`` is the first fifth by all-time revenue.
Checked against a plain-Python statement of the same definition, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from factories import add_customer, add_order
from outreach.store import stats
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerStats, Order

NOW = datetime(2026, 6, 1, 12, 0)
#: Few distinct days and amounts, so that equal figures (ties) are common;
#: 400 days ago is outside the 12 months, -3 is after the evaluation moment.
DAYS = st.sampled_from([-3, 1, 1, 20, 200, 364, 366, 400])
AMOUNTS = st.sampled_from([Decimal("10"), Decimal("10"), Decimal("25.50"), Decimal("100")])
BASE = st.lists(st.lists(st.tuples(DAYS, AMOUNTS), max_size=4), min_size=1, max_size=14)


def ntile5(ordered: list[int]) -> dict[int, int]:
    """SQL's ntile(5) over customer ids already in score order: as even as
    possible, the larger tiles first."""
    size, larger = divmod(len(ordered), 5)
    tiles: dict[int, int] = {}
    position = 0
    for tile in range(1, 6):
        for _ in range(size + (1 if tile <= larger else 0)):
            tiles[ordered[position]] = tile
            position += 1
    return tiles


def expected(base: dict[int, list[tuple[int, Decimal]]]) -> dict[int, tuple]:  # type: ignore[type-arg]
    figures = {}
    for cid, orders in base.items():
        seen = [(NOW - timedelta(days=d), amount) for d, amount in orders if d >= 0]
        if not seen:
            continue
        recent = [(at, amount) for at, amount in seen if at > NOW - timedelta(days=365)]
        figures[cid] = {
            "n": len(seen), "revenue": sum(a for _, a in seen), "last": max(at for at, _ in seen),
            "n12": len(recent), "rev12": sum((a for _, a in recent), Decimal(0)),
        }
    def by(key: str) -> list[int]:
        return sorted(figures, key=lambda c: (figures[c][key], c))

    r, f, m = ntile5(by("last")), ntile5(by("n12")), ntile5(by("rev12"))
    value = ntile5(sorted(figures, key=lambda c: (-figures[c]["revenue"], c)))
    rows = {}
    for cid in base:
        if cid in figures:
            x = figures[cid]
            rows[cid] = (x["n"], x["revenue"], x["n12"], x["rev12"], r[cid], f[cid], m[cid],
                         "vip" if value[cid] == 1 else "regular")
        else:
            rows[cid] = (0, Decimal(0), 0, Decimal(0), None, None, None, "regular")
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=BASE)
def test_scores_are_each_buyers_fifth_of_the_base(engine: Engine, base: list[list[tuple[int, Decimal]]]) -> None:
    # Given a base of customers with these orders (some with none)
    with transaction(engine) as s:
        s.execute(delete(Order))
        s.execute(delete(Customer))
        made = {}
        for n, orders in enumerate(base):
            customer = add_customer(s, f"S{n:02d}")
            for k, (days, amount) in enumerate(orders):
                add_order(s, customer, NOW - timedelta(days=days), amount,
                          ext=f"S{n:02d}-{k}")
            made[customer.id] = orders

    # When the stats are refreshed as of NOW
    with transaction(engine) as s:
        written = stats.refresh(s, now=NOW)

    # Then every customer has a row, with the documented scores and tier
    with transaction(engine) as s:
        got = {
            row.customer_id: (row.order_count, Decimal(row.revenue), row.orders_12m, Decimal(row.revenue_12m),
                              row.r_score, row.f_score, row.m_score, row.value_tier)
            for row in s.scalars(select(CustomerStats))
        }
    assert written == len(base)
    want = expected(made)
    assert {c: (g[4:], g[:4]) for c, g in got.items()} == {c: (w[4:], w[:4]) for c, w in want.items()}


def test_tile_starts_split_like_ntile() -> None:
    # 12 buyers: tiles of 3, 3, 2, 2, 2 (the larger first); 3 buyers: tiles 1–3 only
    assert stats.tile_starts(12) == [3, 6, 8, 10]
    assert stats.tile_starts(3) == [1, 2, 3, 3]
    assert stats.tile_starts(0) == [0, 0, 0, 0]

"""Per-customer aggregates, refreshed set-based before rules are evaluated.

As of ``now``, for every customer: order count and revenue, first/last
order, the last 12 months' orders and revenue, RFM scores (1–5 by quintile
over customers who ever ordered: recency by last order, frequency by orders
in 12 months, monetary by revenue in 12 months), the named RFM group, the
value tier (top 20% by revenue = ``vip``), the lifecycle stage and a simple
lifetime value (12-month revenue × expected lifetime in years).

How, in four set-based steps (bench/rules_bench.py measures them):

1. The buyers' figures: one aggregate over the orders up to ``now``, read in
   customer order from the covering (customer, time, amount) index, so it
   streams — nothing is hashed or sorted — into a temporary table.
2. The cut points of each score: the buyers at the four positions where
   ``ntile(5)`` would start a new fifth, found by sorting (value, customer id)
   pairs, not whole rows.
3. Each buyer's score is 1 + the number of cut points at or before them, so
   scores are exactly SQL's ``ntile(5)`` over (value, customer id) without a
   window sort of a million wide rows per score.
4. The rows are written with the key and indexes built afterwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Integer,
    Numeric,
    Select,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from outreach.store import dialect
from outreach.store.models import Customer, CustomerStats, Order


@dataclass(frozen=True)
class LifecycleThresholds:
    """Lifecycle stages (DOMAIN.md): configurable in rules/policy.yaml."""

    #: new: first order within this many days.
    new_days: int = 183
    #: active: at least ``active_orders`` orders within ``active_days``.
    active_orders: int = 2
    active_days: int = 365
    #: at_risk: no order for more than this many days (but not yet inactive).
    at_risk_days: int = 90
    #: inactive: no order for more than this many days.
    inactive_days: int = 183
    #: Expected customer lifetime for CLV, in years.
    clv_years: int = 3
    #: win_back: ordered within this many days after a silence of at least
    #: ``inactive_days`` before that (a reactivated customer).
    win_back_days: int = 30


#: Named RFM groups (``outreach.domain.RFM_GROUP_NAMES``), first match wins (scores are 1–5, 5 best).
RFM_GROUPS = (
    ("champions", lambda r, f, m, n: and_(r >= 4, f >= 4, m >= 4)),
    ("at_risk", lambda r, f, m, n: and_(r <= 2, (f >= 4) | (m >= 4))),
    ("loyal", lambda r, f, m, n: f >= 4),
    ("new", lambda r, f, m, n: and_(r >= 4, n == 1)),
    ("hibernating", lambda r, f, m, n: and_(r <= 2, f <= 2, m <= 2)),
    ("promising", lambda r, f, m, n: r >= 3),
    ("needs_attention", lambda r, f, m, n: r >= 1),
)
#: PostgreSQL work_mem per sort/hash node during the refresh.
STATS_WORK_MEM = "32MB"



def fingerprint(thresholds: LifecycleThresholds) -> str:
    """What the stats were computed with, so changed thresholds force a refresh
    (a short digest: it is stored on each of the million rows)."""
    spelled = ",".join(f"{name}={value}" for name, value in sorted(vars(thresholds).items()))
    return hashlib.sha256(spelled.encode()).hexdigest()[:16]


def is_fresh(session: Session, *, now: datetime, thresholds: LifecycleThresholds | None = None) -> bool:
    """Stats were already computed as of exactly this moment with these
    thresholds (reused, e.g. by the rules of one ``run`` and by a preview right after)."""
    row = session.execute(select(CustomerStats.as_of, CustomerStats.params).limit(1)).first()
    return row is not None and tuple(row) == (now, fingerprint(thresholds or LifecycleThresholds()))


def _win_back_window(now: datetime, t: LifecycleThresholds) -> tuple[datetime, datetime]:
    """(back_from, silent_from): a win-back customer ordered since back_from,
    ordered before silent_from, and not in between."""
    back_from = now - timedelta(days=t.win_back_days)
    return back_from, back_from - timedelta(days=t.inactive_days)


def aggregates(now: datetime, t: LifecycleThresholds) -> Select[*tuple[Any, ...]]:
    """Every buyer's order figures as of ``now``, in one pass over the orders
    in customer order (the covering (customer, time, amount) index): all-time
    count, revenue, first and last order, and the windowed counts (last 12
    months, the active window, win-back's silence). The output is already in
    customer order, so nothing is hashed or sorted."""
    year_ago = now - timedelta(days=365)
    active_from = now - timedelta(days=t.active_days)
    back_from, silent_from = _win_back_window(now, t)
    o = Order.__table__.c

    def counted(*when: ColumnElement[bool], value: Any = 1) -> ColumnElement[Any]:
        return func.sum(case((and_(*when), value), else_=0))

    return (
        select(
            o.customer_id.label("customer_id"),
            func.count().label("n"),
            func.sum(o.amount).label("revenue"),
            func.min(o.ordered_at).label("first_at"),
            func.max(o.ordered_at).label("last_at"),
            counted(o.ordered_at > year_ago).label("n12"),
            counted(o.ordered_at > year_ago, value=o.amount).label("rev12"),
            counted(o.ordered_at > active_from).label("n_active"),
            counted(o.ordered_at > silent_from, o.ordered_at <= back_from).label("n_silent"),
        )
        .where(o.ordered_at <= now)
        .group_by(o.customer_id)
    )


#: Scores and their order (ties broken by customer id, as ``ntile`` would):
#: name → (column of ``aggregates``, descending?).
SCORED = {"r": ("last_at", False), "f": ("n12", False), "m": ("rev12", False), "value": ("revenue", True)}


def tile_starts(buyers: int, tiles: int = 5) -> list[int]:
    """0-based positions where tiles 2…``tiles`` begin among ``buyers`` rows
    ordered by a score, split as SQL's ``ntile`` splits them (as evenly as
    possible, larger tiles first)."""
    size, larger = divmod(buyers, tiles)
    return [k * size + min(k, larger) for k in range(1, tiles)]


def _cut_points(session: Session, buyers: Table, name: str, starts: list[int]) -> Table:
    """The rows of ``buyers`` at ``starts`` in this score's order: a narrow
    sort of (value, customer id), not a sort of whole rows."""
    column, descending = SCORED[name]
    value = buyers.c[column]
    order = (value.desc() if descending else value, buyers.c.customer_id)
    ranked = select(
        type_coerce(func.row_number().over(order_by=order) - 1, Integer).label("pos"),
        value.label("value"),
        buyers.c.customer_id,
    ).subquery("ranked")
    return dialect.materialize(session, select(ranked).where(ranked.c.pos.in_(starts)), f"stats_cut_{name}")


def _at_or_after(buyers: Table, name: str, cuts: Table, start: int) -> ColumnElement[bool]:
    """This buyer's (value, id) is at or after the cut row at ``start`` in the
    score's order (false when there is no such row: fewer buyers than tiles)."""
    column, descending = SCORED[name]
    value, me = buyers.c[column], buyers.c.customer_id
    cut_value = select(cuts.c.value).where(cuts.c.pos == start).scalar_subquery()
    cut_id = select(cuts.c.customer_id).where(cuts.c.pos == start).scalar_subquery()
    beyond = value < cut_value if descending else value > cut_value
    return or_(beyond, and_(value == cut_value, me >= cut_id))


def scored(buyers: Table, cuts: dict[str, Table], starts: list[int], now: datetime,
           t: LifecycleThresholds) -> Select[*tuple[Any, ...]]:
    """The buyers' ``customer_stats`` rows (in the table's column order): their figures,
    quintile scores against the cut points, RFM group, tier and stage."""

    def tile(name: str) -> ColumnElement[int]:
        # 1 + the number of tile starts at or before this buyer's position.
        return sum((case((_at_or_after(buyers, name, cuts[name], at), 1), else_=0) for at in starts),
                   literal(1))

    # Scores once per buyer (OFFSET 0 keeps the databases from inlining them
    # into every group and stage test below).
    scores = (
        select(*buyers.c, tile("r").label("r"), tile("f").label("f"), tile("m").label("m"),
               # vip: the first fifth by revenue (before the first tile start).
               case((_at_or_after(buyers, "value", cuts["value"], starts[0]), False), else_=True).label("vip"))
        .offset(0)
        .subquery("scores")
    )
    b = scores.c
    back_from, silent_from = _win_back_window(now, t)
    group = case(*[(cond(b.r, b.f, b.m, b.n), literal(name)) for name, cond in RFM_GROUPS], else_=None)
    reactivated = and_(b.last_at > back_from, b.first_at <= silent_from, b.n_silent == 0)
    stage = case(
        (reactivated, literal("win_back")),
        (b.first_at > now - timedelta(days=t.new_days), literal("new")),
        (b.n_active >= t.active_orders, literal("active")),
        (b.last_at <= now - timedelta(days=t.inactive_days), literal("inactive")),
        (b.last_at <= now - timedelta(days=t.at_risk_days), literal("at_risk")),
        else_=literal("steady"),
    )
    tier = case((b.vip, literal("vip")), else_=literal("regular"))
    clv_years = literal(Decimal(t.clv_years), Numeric(16, 2))
    return select(
        b.customer_id, literal(now), literal(fingerprint(t)), b.n, b.revenue, b.first_at, b.last_at,
        b.n12, b.rev12, b.r, b.f, b.m, group, tier, stage, b.rev12 * clv_years,
    )


def prospects(buyers: Table, now: datetime, t: LifecycleThresholds) -> Select[*tuple[Any, ...]]:
    """The ``customer_stats`` rows of customers without an order up to ``now``."""
    none = null()
    return select(
        Customer.id, literal(now), literal(fingerprint(t)), literal(0), literal(0), none, none,
        literal(0), literal(0), none, none, none, none, literal("regular"), literal("prospect"), literal(0),
    ).where(~exists().where(buyers.c.customer_id == Customer.id))


def refresh(session: Session, *, now: datetime, thresholds: LifecycleThresholds | None = None) -> int:
    """Recompute ``customer_stats`` as of ``now``; returns rows written."""
    t = thresholds or LifecycleThresholds()
    # Several sorts and hashes of a million rows are alive at once here: a
    # smaller budget each keeps the backend's memory bounded (bench/).
    dialect.tune_session(session, work_mem=STATS_WORK_MEM)
    table = cast(Table, CustomerStats.__table__)
    # The key and indexes are built once after the load (a sort each).
    dialect.empty_for_reload(session, table)
    # The buyers' figures once into a temporary table (streamed in customer
    # order), the cut points of each score from it, then the buyers' rows and
    # the prospects' rows.
    buyers = dialect.load_temporary(session, aggregates(now, t), "stats_buyers", key="customer_id")
    starts = tile_starts(session.scalar(select(func.count()).select_from(buyers)) or 0)
    cuts = {name: _cut_points(session, buyers, name, starts) for name in SCORED}
    # scored() and prospects() select in the table's column order.
    columns = [column.name for column in table.columns]
    written = 0
    for rows in (scored(buyers, cuts, starts, now, t), prospects(buyers, now, t)):
        result = session.execute(insert(CustomerStats).from_select(columns, rows),
                                 execution_options={"preserve_rowcount": True})
        written += cast(CursorResult[Any], result).rowcount
    dialect.restore_after_reload(session, table)
    dialect.drop_temporary(session, buyers)
    return written

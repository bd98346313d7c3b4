"""Per-customer aggregates, refreshed set-based before rules are evaluated.

One ``INSERT … SELECT`` computes, as of ``now``, for every customer: order
count and revenue, first/last order, the last 12 months' orders and revenue,
RFM scores (1–5 by quintile over customers who ever ordered: recency by last
order, frequency by orders in 12 months, monetary by revenue in 12 months),
the named RFM group, the value tier (top 20% by revenue = ``vip``), the
lifecycle stage and a simple lifetime value (12-month revenue × expected
lifetime in years).

All-time figures come from ``order_totals`` (kept by database triggers);
only the 12-month and active-window counts read ``orders``, through the
index on order time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Numeric, Select, and_, case, delete, func, insert, literal, select, text
from sqlalchemy.orm import Session

from outreach import totals
from outreach.models import Customer, CustomerStats, Order


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


#: Named RFM groups, first match wins (scores are 1–5, 5 best).
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

RFM_GROUP_NAMES = tuple(name for name, _ in RFM_GROUPS)
LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "inactive", "win_back", "steady")


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


def computed(now: datetime, t: LifecycleThresholds) -> Select:
    """Every customer's stats row as of ``now``, in ``customer_stats`` column order."""
    year_ago = now - timedelta(days=365)
    active_from = now - timedelta(days=t.active_days)
    # win_back: ordered since back_from, ordered before silent_from, and
    # nothing in between (counted in the same pass over recent orders).
    back_from = now - timedelta(days=t.win_back_days)
    silent_from = back_from - timedelta(days=t.inactive_days)
    # All-time figures from the maintained order totals; only the windowed ones
    # (last 12 months, the active window) read orders, through the time index.
    everything = totals.as_of(now).subquery("everything")
    recent = (
        select(
            Order.customer_id.label("customer_id"),
            func.sum(case((Order.ordered_at > year_ago, 1), else_=0)).label("n12"),
            func.sum(case((Order.ordered_at > year_ago, Order.amount), else_=0)).label("rev12"),
            func.sum(case((Order.ordered_at > active_from, 1), else_=0)).label("n_active"),
            func.sum(case((and_(Order.ordered_at > silent_from, Order.ordered_at <= back_from), 1),
                          else_=0)).label("n_silent"),
        )
        .where(Order.ordered_at <= now, Order.ordered_at > min(year_ago, active_from, silent_from))
        .group_by(Order.customer_id)
        .subquery("recent")
    )
    agg = (
        select(
            everything.c.customer_id,
            everything.c.order_count.label("n"),
            everything.c.revenue,
            everything.c.first_order_at.label("first_at"),
            everything.c.last_order_at.label("last_at"),
            func.coalesce(recent.c.n12, 0).label("n12"),
            func.coalesce(recent.c.rev12, 0).label("rev12"),
            func.coalesce(recent.c.n_active, 0).label("n_active"),
            func.coalesce(recent.c.n_silent, 0).label("n_silent"),
        )
        .outerjoin(recent, recent.c.customer_id == everything.c.customer_id)
        .subquery("agg")
    )
    # Scores over the customers who ordered (the window sorts stay narrow);
    # everyone else joins in with no orders and no scores.
    a = agg.c
    scores = select(
        *a,
        func.ntile(5).over(order_by=(a.last_at, a.customer_id)).label("r"),
        func.ntile(5).over(order_by=(a.n12, a.customer_id)).label("f"),
        func.ntile(5).over(order_by=(a.rev12, a.customer_id)).label("m"),
        func.ntile(5).over(order_by=(a.revenue.desc(), a.customer_id)).label("value_tile"),
    ).subquery("scores")
    c = scores.c
    scored = (
        select(
            Customer.id.label("customer_id"),
            func.coalesce(c.n, 0).label("n"),
            func.coalesce(c.revenue, 0).label("revenue"),
            c.first_at,
            c.last_at,
            func.coalesce(c.n12, 0).label("n12"),
            func.coalesce(c.rev12, 0).label("rev12"),
            func.coalesce(c.n_active, 0).label("n_active"),
            func.coalesce(c.n_silent, 0).label("n_silent"),
            c.r,
            c.f,
            c.m,
            c.value_tile,
        )
        .outerjoin(scores, c.customer_id == Customer.id)
        .subquery("scored")
    )
    s = scored.c
    ordered = s.n > 0
    r = case((ordered, s.r), else_=None)
    f = case((ordered, s.f), else_=None)
    m = case((ordered, s.m), else_=None)
    group = case(*[(and_(ordered, cond(s.r, s.f, s.m, s.n)), literal(name)) for name, cond in RFM_GROUPS], else_=None)
    reactivated = and_(s.last_at > back_from, s.first_at <= silent_from, s.n_silent == 0)
    stage = case(
        (s.n == 0, literal("prospect")),
        (reactivated, literal("win_back")),
        (s.first_at > now - timedelta(days=t.new_days), literal("new")),
        (s.n_active >= t.active_orders, literal("active")),
        (s.last_at <= now - timedelta(days=t.inactive_days), literal("inactive")),
        (s.last_at <= now - timedelta(days=t.at_risk_days), literal("at_risk")),
        else_=literal("steady"),
    )
    tier = case((and_(ordered, s.value_tile == 1), literal("vip")), else_=literal("regular"))
    return select(
        s.customer_id,
        literal(now),
        literal(fingerprint(t)),
        s.n,
        s.revenue,
        s.first_at,
        s.last_at,
        s.n12,
        s.rev12,
        r,
        f,
        m,
        group,
        tier,
        stage,
        (s.rev12 * literal(Decimal(t.clv_years), Numeric(16, 2))),
    )


def refresh(session: Session, *, now: datetime, thresholds: LifecycleThresholds | None = None) -> int:
    """Recompute ``customer_stats`` as of ``now``; returns rows written."""
    from outreach.store import tune_session

    t = thresholds or LifecycleThresholds()
    # Several sorts and hashes of a million rows are alive at once here: a
    # smaller budget each keeps the backend's memory bounded (bench/).
    tune_session(session, work_mem=STATS_WORK_MEM)
    postgresql = session.get_bind().dialect.name == "postgresql"
    indexes = sorted(CustomerStats.__table__.indexes, key=lambda index: index.name)
    # The secondary indexes (and on PostgreSQL the key) are built once after
    # the load, a sort each, instead of taking a million insertions each.
    # Both databases change schema transactionally: a failed refresh leaves
    # the old rows and indexes.
    if postgresql:
        # Far cheaper than deleting every row.
        session.execute(text("TRUNCATE customer_stats"))
        session.execute(text("ALTER TABLE customer_stats DROP CONSTRAINT pk_customer_stats"))
    else:
        session.execute(delete(CustomerStats))
    for index in indexes:
        index.drop(session.connection())
    result = session.execute(
        insert(CustomerStats).from_select(
            [
                "customer_id", "as_of", "params", "order_count", "revenue", "first_order_at", "last_order_at",
                "orders_12m", "revenue_12m", "r_score", "f_score", "m_score", "rfm_segment",
                "value_tier", "lifecycle_stage", "clv",
            ],
            computed(now, t),
        )
    )
    if postgresql:
        session.execute(text("ALTER TABLE customer_stats ADD CONSTRAINT pk_customer_stats PRIMARY KEY (customer_id)"))
    for index in indexes:
        index.create(session.connection())
    return result.rowcount or 0

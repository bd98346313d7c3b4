"""Customer stats, as a marketer reads them: RFM scores and groups, the value
tier and CLV, lifecycle stages with their thresholds from the policy — through
rules' segments and ``stats.refresh``, on SQLite and PostgreSQL.

On any base of buyers — ties on recency, frequency and revenue included, orders
older than 12 months and orders after the evaluation moment too — each score is
the customer's fifth (``ntile(5)``) of the buyers ordered by that figure, ties
split by customer id, and ``vip`` is the first fifth by all-time revenue.
Checked against a plain-Python statement of the same definition."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from factories import NOW, add_customer, add_order, loaded_rule
from outreach.planning.prepare import prepare
from outreach.rules import RuleSet
from outreach.rules.policy import LifecyclePolicy, Policy
from outreach.store import stats
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerStats, Order
from policy_factories import ruleset, stats_of
from trigger_helpers import DAY, EVERY_BUYER, MORNING, recipients


# ------------------------------------------------------------------ RFM scores and the value tier
def test_rfm_scores_and_groups(engine: Engine) -> None:
    # Given five buyers with distinct recency, frequency and 12-month revenue, and a prospect
    with transaction(engine) as s:
        champ = add_customer(s, "champ")
        for days in (1, 10, 20, 30, 40):
            add_order(s, champ, NOW - days * DAY, 100)            # R5 F5 M5 (500)
        at_risk = add_customer(s, "slipping")
        for days in (300, 310, 320, 330):
            add_order(s, at_risk, NOW - days * DAY, 100)          # R2 F4 M4 (400)
        mid = add_customer(s, "middling")
        for days in (100, 150, 200):
            add_order(s, mid, NOW - days * DAY, 100)              # R3 F3 M3 (300)
        add_order(s, add_customer(s, "newbie"), NOW - 2 * DAY, 10)  # R4 F1 M1, one order
        sleepy = add_customer(s, "sleepy")
        for days in (350, 360):
            add_order(s, sleepy, NOW - days * DAY, 10)            # R1 F2 M2 (20)
        add_customer(s, "prospect")

    # When a rule for champions and new customers runs
    found = recipients(engine, EVERY_BUYER.format(name="rfm", segment="{stats: {rfm_segment: [champions, new]}}"), NOW)

    # Then it reaches exactly them, and the scores are as documented
    assert found == {"champ", "newbie"}
    stats = stats_of(engine)
    assert {ext: (st.r_score, st.f_score, st.m_score, st.rfm_segment) for ext, st in stats.items()} == {
        "champ": (5, 5, 5, "champions"),
        "slipping": (2, 4, 4, "at_risk"),
        "middling": (3, 3, 3, "promising"),
        "newbie": (4, 1, 1, "new"),
        "sleepy": (1, 2, 2, "hibernating"),
        "prospect": (None, None, None, None),
    }
    assert stats["champ"].clv == Decimal("1500.00")  # 500 in 12 months × 3 years
    slipping = EVERY_BUYER.format(name="scores", segment="{stats: {r_score: {lte: 2}, m_score: {gte: 4}}}")
    assert recipients(engine, slipping, NOW) == {"slipping"}


def test_vip_is_the_top_20_percent_by_revenue(engine: Engine) -> None:
    # Given ten buyers with revenues 100, 200, … 1000 and two prospects
    with transaction(engine) as s:
        for n in range(1, 11):
            add_order(s, add_customer(s, f"rev{n * 100:04d}"), NOW - 10 * DAY, n * 100)
        add_customer(s, "prospect-1")
        add_customer(s, "prospect-2")
    rs = ruleset(segments={"vip": {"stats": {"value_tier": "vip"}}})

    # When a rule for the named segment `vip` runs
    found = recipients(engine, EVERY_BUYER.format(name="vips", segment="{segment: vip}"), NOW, rs)

    # Then the two best customers are VIPs; everyone else, prospects included, is regular
    assert found == {"rev1000", "rev0900"}
    tiers = {ext: st.value_tier for ext, st in stats_of(engine).items()}
    assert {ext for ext, tier in tiers.items() if tier == "vip"} == {"rev1000", "rev0900"}
    assert tiers["prospect-1"] == "regular"


# ------------------------------------------------------------------ scores on any base of buyers
#: The moment the stats are refreshed at.
AS_OF = datetime(2026, 6, 1, 12, 0)
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
        seen = [(AS_OF - timedelta(days=d), amount) for d, amount in orders if d >= 0]
        if not seen:
            continue
        recent = [(at, amount) for at, amount in seen if at > AS_OF - timedelta(days=365)]
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
                add_order(s, customer, AS_OF - timedelta(days=days), amount,
                          ext=f"S{n:02d}-{k}")
            made[customer.id] = orders

    # When the stats are refreshed as of AS_OF
    with transaction(engine) as s:
        written = stats.refresh(s, now=AS_OF)

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


# ------------------------------------------------------------------ lifecycle stages
def lifecycle_shop(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "prospect")
        add_order(s, add_customer(s, "new"), NOW - 10 * DAY)
        active = add_customer(s, "active")
        add_order(s, active, NOW - 200 * DAY)
        add_order(s, active, NOW - 20 * DAY)
        at_risk = add_customer(s, "at-risk")
        add_order(s, at_risk, NOW - 400 * DAY)
        add_order(s, at_risk, NOW - 120 * DAY)
        inactive = add_customer(s, "inactive")
        add_order(s, inactive, NOW - 500 * DAY)
        add_order(s, inactive, NOW - 200 * DAY)
        steady = add_customer(s, "steady")
        add_order(s, steady, NOW - 500 * DAY)
        add_order(s, steady, NOW - 40 * DAY)
        back = add_customer(s, "win-back")  # ordered 10 days ago after 490 silent days
        add_order(s, back, NOW - 500 * DAY)
        add_order(s, back, NOW - 10 * DAY)


def test_lifecycle_stages_as_documented(engine: Engine) -> None:
    lifecycle_shop(engine)
    text = EVERY_BUYER.format(name="lapsing", segment="{stats: {lifecycle_stage: [at_risk, inactive]}}")

    assert recipients(engine, text, NOW) == {"at-risk", "inactive"}
    stages = {ext: st.lifecycle_stage for ext, st in stats_of(engine).items()}
    assert stages == {
        "prospect": "prospect",
        "new": "new",
        "active": "active",
        "at-risk": "at_risk",
        "inactive": "inactive",
        "steady": "steady",
        "win-back": "win_back",
    }


def test_lifecycle_thresholds_come_from_the_policy(engine: Engine) -> None:
    lifecycle_shop(engine)
    rs = ruleset({"lifecycle": {"at_risk_days": 25}})
    text = EVERY_BUYER.format(name="at-risk-25", segment="{stats: {lifecycle_stage: at_risk}}")

    # With at_risk after 25 days, the customer whose last order is 40 days old is at risk too
    assert recipients(engine, text, NOW, rs) == {"at-risk", "steady"}


def test_lifecycle_stages_follow_the_documented_thresholds(engine: Engine) -> None:
    # Given one customer per stage (thresholds: new 183 d, active 2 orders/365 d,
    # at_risk 90 d, inactive 183 d, win_back: ordered in 30 d after 183 d of silence)
    with transaction(engine) as s:
        add_customer(s, "prospect")
        add_order(s, add_customer(s, "new"), MORNING - timedelta(days=20))
        active = add_customer(s, "active", created_at=MORNING - timedelta(days=900))
        for days in (400, 200, 100):
            add_order(s, active, MORNING - timedelta(days=days))
        at_risk = add_customer(s, "at_risk")
        for days in (600, 120):
            add_order(s, at_risk, MORNING - timedelta(days=days))
        add_order(s, add_customer(s, "inactive"), MORNING - timedelta(days=300))
        back = add_customer(s, "win_back")
        for days in (500, 10):
            add_order(s, back, MORNING - timedelta(days=days))
    with transaction(engine) as s:
        stats.refresh(s, now=MORNING)
    with Session(engine) as s:
        stages = dict(s.execute(select(Customer.external_id, CustomerStats.lifecycle_stage)
                                .join(CustomerStats, CustomerStats.customer_id == Customer.id)).all())
    assert stages == {name: name for name in ("prospect", "new", "active", "at_risk", "inactive", "win_back")}


def test_win_back_needs_the_whole_silence_without_an_order(engine: Engine) -> None:
    # Silence: (now − 30 − inactive_days, now − 30]; an order in it, even on
    # its last day, means the customer never lapsed. A silence reaching past
    # 12 months (inactive_days 400) is checked as far back as it goes.
    histories = {
        "back": (700, 10),
        "ordered-in-silence": (700, 390, 10),
        "ordered-on-last-silent-day": (700, 30, 10),
        "ordered-just-before-silence": (700, 431, 10),
    }
    with transaction(engine) as s:
        for name, days_ago in histories.items():
            c = add_customer(s, name)
            for days in days_ago:
                add_order(s, c, MORNING - timedelta(days=days))
    with transaction(engine) as s:
        stats.refresh(s, now=MORNING, thresholds=stats.LifecycleThresholds(inactive_days=400))
    with Session(engine) as s:
        back = set(s.scalars(select(Customer.external_id).join(CustomerStats, CustomerStats.customer_id == Customer.id)
                             .where(CustomerStats.lifecycle_stage == "win_back")))
    assert back == {"back", "ordered-just-before-silence"}


def test_changed_lifecycle_thresholds_recompute_stats_for_the_same_moment(engine: Engine) -> None:
    # Given a customer whose last order was 100 days ago
    with transaction(engine) as s:
        c = add_customer(s, "lapsing")
        add_order(s, c, MORNING - timedelta(days=400))
        add_order(s, c, MORNING - timedelta(days=100))
    rule = loaded_rule(
        "name: at-risk\ntrigger: {type: lifecycle, stage: at_risk}\ntemplate: winback\nchannels: [email]\n"
    )

    def stage(at_risk_days: int) -> str:
        ruleset = RuleSet(policy=Policy(lifecycle=LifecyclePolicy(at_risk_days=at_risk_days)))
        with transaction(engine) as s:
            prepare(s, [rule.spec], now=MORNING, ruleset=ruleset)
        with Session(engine) as s:
            return s.scalar(select(CustomerStats.lifecycle_stage))

    # When the marketer moves "at risk" from 90 to 120 days, for the same moment
    assert stage(90) == "at_risk"
    # Then the stats are computed again, not reused
    assert stage(120) == "steady"
    assert stage(90) == "at_risk"

"""The measures of one comparison — treated messages against the held-out
control group — as the report's document writes them: each group's
conversion and revenue per customer, the lift with its 95 % interval, the
incremental conversions, revenue and ROI, and a verdict in plain words.

Pure functions of sums (``Arm``) the database added up; intervals come from
``outreach.stats`` (Newcombe for the rates, Welch for revenue per customer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from outreach.planning.control import MIN_CONTROL_GROUP  # the same bar as `rules preview` warns at
from outreach.reporting.money import amount
from outreach.stats import CONFIDENCE, Interval, Sums, customers_needed, mean_difference, rate_difference


@dataclass(frozen=True)
class Arm:
    """Sums over measured messages (sent, or held out): every field adds up across groups."""

    customers: int = 0
    converted: int = 0
    revenue: Decimal = Decimal(0)
    squares: Decimal = Decimal(0)
    open_windows: int = 0

    def __add__(self, other: Arm) -> Arm:
        return Arm(self.customers + other.customers, self.converted + other.converted,
                   self.revenue + other.revenue, self.squares + other.squares,
                   self.open_windows + other.open_windows)

    @property
    def rate(self) -> float | None:
        return self.converted / self.customers if self.customers else None

    @property
    def sums(self) -> Sums:
        return Sums(self.customers, float(self.revenue), float(self.squares))


def group(arm: Arm) -> dict[str, Any]:
    """``treated`` / ``control`` of the document."""
    per = arm.revenue / arm.customers if arm.customers else None
    return {"customers": arm.customers, "converted": arm.converted, "conversion_rate": arm.rate,
            "revenue": amount(arm.revenue), "revenue_per_customer": None if per is None else amount(per)}


def interval(value: Interval | None) -> dict[str, float] | None:
    return None if value is None else {"estimate": value.estimate, "low": value.low, "high": value.high}


@dataclass(frozen=True)
class Context:
    """What a verdict needs besides the two groups."""

    currency: str
    margin: Decimal
    #: Everything the comparison cost (messages, fixed, discounts); 0: no ROI.
    cost: Decimal
    holdout_percent: float
    #: Whether ``cost`` is what this comparison cost (False for a split: costs are not split).
    costed: bool = True


def lift(treated: Arm, control: Arm, ctx: Context) -> dict[str, Any]:
    """``lift`` of the document: treated minus control, with intervals and a verdict."""
    rate = rate_difference(treated.converted, treated.customers, control.converted, control.customers)
    per = mean_difference(treated.sums, control.sums)
    if control.customers < 2 or treated.customers < 2:
        rate = per = None  # Newcombe needs someone on each side; Welch needs two
    revenue = None if per is None else per.scaled(treated.customers)
    roi = None if revenue is None or not ctx.cost else revenue.scaled(float(ctx.margin / ctx.cost), -1.0)
    needed = _more_customers(treated, control) if rate is not None and not rate.significant else None
    return {
        "conversion_pp": interval(None if rate is None else rate.scaled(100)),
        "revenue_per_customer": interval(per),
        "incremental_conversions": interval(None if rate is None else rate.scaled(treated.customers)),
        "incremental_revenue": interval(revenue),
        "incremental_roi": interval(roi),
        "significant": bool(rate is not None and rate.significant),
        "revenue_significant": bool(per is not None and per.significant),
        "verdict": verdict(treated, control, rate, revenue, needed, ctx, roi),
        "verdict_short": short_verdict(treated, control, rate, needed),
        "customers_needed": needed,
    }


def _more_customers(treated: Arm, control: Arm) -> int | None:
    """About how many more measured customers (treated and control together,
    split as now) would show the observed difference at 95 % with 80 % power."""
    p1, p2 = treated.rate, control.rate
    if p1 is None or p2 is None:
        return None
    per_group = customers_needed(p1, p2)
    if per_group is None:
        return None
    k = treated.customers / control.customers  # treated per control customer
    control_needed = per_group * (1 + 1 / k) / 2  # the same variance as two equal groups of per_group
    return max(0, math.ceil(control_needed * (1 + k)) - treated.customers - control.customers)


def verdict(treated: Arm, control: Arm, rate: Interval | None, revenue: Interval | None, needed: int | None,
            ctx: Context, roi: Interval | None = None) -> str:
    pct = f"{CONFIDENCE:.0%}"
    if control.customers == 0:
        text = ("no control group: holdout_percent is 0, so nothing shows what these customers would have bought "
                "anyway (set holdout_percent, e.g. 10, to measure a lift)" if not ctx.holdout_percent else
                "no control group yet: no customer was held out in this period")
    elif rate is None:
        text = (f"too few to compare: {treated.customers} treated, {control.customers} in the control group "
                "(need at least 2 on each side)")
    else:
        said = f"{rate.estimate * 100:+.1f} pp, {pct} CI {rate.low * 100:+.1f} to {rate.high * 100:+.1f}"
        if rate.low > 0:
            text = f"significant: the campaign added {rate.estimate * 100:.1f} pp ({said})"
            if roi is not None and roi.estimate < 0:
                text += f", but did not pay for itself: incremental ROI {roi.estimate:+.1f}x"
        elif rate.high < 0:
            lost = ctx.cost - Decimal(str(revenue.estimate if revenue else 0)) * ctx.margin
            text = f"significant down: the control group bought more ({said})"
            if ctx.costed:
                text += (f"; the campaign cost {max(lost, ctx.cost):,.2f} {ctx.currency} "
                         "(the margin it lost plus what it cost to run)")
        elif needed is None:
            text = f"not significant: treated and control converted at the same rate ({said})"
        elif needed == 0:
            text = f"not significant ({said}): a difference this small may not exist"
        else:
            text = f"not significant yet ({said}): need about {needed:,} more customers (treated and control)"
    if treated.open_windows + control.open_windows:
        text += (f" — {treated.open_windows + control.open_windows:,} windows still open: "
                 "these figures may still change")
    return text


def short_verdict(treated: Arm, control: Arm, rate: Interval | None, needed: int | None) -> str:
    """The verdict in a few words, for a table column."""
    if control.customers == 0:
        text = "no control group"
    elif rate is None:
        text = "too few to compare"
    elif rate.low > 0:
        text = "significant up"
    elif rate.high < 0:
        text = "significant down"
    elif needed:
        text = f"not significant yet (~{needed:,} more)"
    else:
        text = "not significant"
    return text + ("; windows open" if treated.open_windows + control.open_windows else "")


def control_warning(rule: str, control: Arm, holdout_percent: float) -> str | None:
    """The warning for a control group too small to measure a lift (None: large enough, or none at all)."""
    if not 0 < control.customers < MIN_CONTROL_GROUP:
        return None
    return (f"{rule}: control group of {control.customers} customers — too small to measure a lift "
            f"(need ≥ {MIN_CONTROL_GROUP}; raise holdout_percent, now {holdout_percent:g}%, or wait for more sends)")

"""How the report's figures read: counts with thousands separators, exact amounts
with two decimals, rates as percentages, lifts in signed percentage points with
their 95% interval, and the verdict of an interval as a word and a colour.

Every function takes what the report's document holds (docs/report.md): an
amount is a string (or, inside an interval, a float), a missing value is
``None``, and each gives "—" for what is missing rather than failing."""

from __future__ import annotations

import math
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

#: What a missing or unmeasurable figure reads as.
MISSING = "—"


def number(value: Any) -> float | None:
    """A finite float of ``value`` (an int, float or decimal string), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None
    return result if math.isfinite(result) else None


def count(value: Any) -> str:
    n = number(value)
    return MISSING if n is None else f"{round(n):,}"


def money(value: Any) -> str:
    """An amount, exact when it is the document's decimal string: ``41234.5`` → ``41,234.50``."""
    if isinstance(value, str):
        try:
            return f"{Decimal(value):,.2f}"
        except InvalidOperation:
            return MISSING
    n = number(value)
    return MISSING if n is None else f"{n:,.2f}"


def compact(value: float) -> str:
    """An axis label: ``1200`` → ``1.2k``, ``3.4e6`` → ``3.4M``."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def percent(rate: Any) -> str:
    n = number(rate)
    return MISSING if n is None else f"{n * 100:.1f}%"


def share(part: Any, whole: Any) -> str:
    p, w = number(part), number(whole)
    return MISSING if p is None or not w else f"{p / w * 100:.1f}%"


def pp(value: Any) -> str:
    n = number(value)
    return MISSING if n is None else f"{n:+.1f} pp"


def times(value: Any) -> str:
    """A ratio such as ROI: ``11.3`` → ``11.3x``."""
    n = number(value)
    return MISSING if n is None else f"{n:,.1f}x"


def bounds(interval: dict[str, Any] | None, fmt: str = "number") -> str:
    """The 95% interval: ``4.4 to 7.2`` (amounts and ROI in their own format)."""
    if not interval:
        return MISSING
    low, high = number(interval.get("low")), number(interval.get("high"))
    if low is None or high is None:
        return MISSING
    shown = {"money": _rounded_money, "times": times}.get(fmt, lambda v: f"{v:.1f}")
    return f"{shown(low)} to {shown(high)}"


def _rounded_money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def estimate(interval: dict[str, Any] | None, fmt: str = "pp") -> str:
    if not interval:
        return MISSING
    value = interval.get("estimate")
    return {"pp": pp, "money": money, "times": times}[fmt](value)


def verdict(lift: dict[str, Any] | None) -> str:
    """``up``, ``down`` or ``flat`` (not significant), or ``none`` when there is no lift."""
    pp_interval = (lift or {}).get("conversion_pp")
    if not pp_interval:
        return "none"
    low, high, point = (number(pp_interval.get(k)) for k in ("low", "high", "estimate"))
    significant = lift.get("significant") if lift else None
    if significant is None:
        significant = (low is not None and low > 0) or (high is not None and high < 0)
    if not significant or point is None:
        return "flat"
    return "up" if point > 0 else "down"


#: The verdict in words, for the legend and beside each lift.
VERDICT_WORDS = {"up": "significant gain", "down": "significant loss", "flat": "not significant",
                 "none": "not measured"}


def when(value: Any) -> str:
    """A moment of the document (naive ISO, UTC) as people read it: ``2026-12-04 08:00``."""
    if not value:
        return MISSING
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d" if moment.time() == time() else "%Y-%m-%d %H:%M")

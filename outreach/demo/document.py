"""A stand-in for the report's document — only the part the demo's recovery
check reads (``docs/report.md``, version 1): per rule, ``holdout_percent``,
``treated`` and ``control`` (customers, converted, conversion_rate) and
``lift.conversion_pp`` {estimate, low, high} in percentage points.

Computed from the same store query the report stands on
(``store.variants.variant_outcomes``: any order of the customer inside each
measured message's window) and the same interval (``stats.rate_difference``,
Newcombe). MERGE: once ``outreach.reporting.document.build_document`` is in,
``run.py`` calls it instead of :func:`lift_document` and this module goes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach.stats import rate_difference
from outreach.store.models import Rule
from outreach.store.variants import variant_outcomes

#: Messages each side needs for an interval (docs/report.md: null below).
MIN_SIDE = 2


def lift_document(engine: Engine, *, as_of: datetime) -> dict[str, Any]:
    """``{"version": 1, "as_of": …, "rules": [...]}`` with each rule's
    conversion lift (its A/B variants' sends added up as the treated group)."""
    with Session(engine) as session:
        rules = session.execute(select(Rule.name, Rule.definition).order_by(Rule.name)).all()
        arms = variant_outcomes(session, now=as_of)
    counts: dict[tuple[str, bool], tuple[int, int]] = {}
    for arm in arms:
        n, x = counts.get((arm.rule, arm.held_out), (0, 0))
        counts[(arm.rule, arm.held_out)] = (n + arm.measured, x + arm.converted)
    found = []
    for name, definition in rules:
        (n_t, x_t), (n_c, x_c) = counts.get((name, False), (0, 0)), counts.get((name, True), (0, 0))
        # As the report: no interval with fewer than MIN_SIDE on a side.
        lift = rate_difference(x_t, n_t, x_c, n_c) if min(n_t, n_c) >= MIN_SIDE else None
        found.append({
            "rule": name,
            "holdout_percent": float((definition or {}).get("holdout_percent", 0)),
            "treated": _group(n_t, x_t),
            "control": _group(n_c, x_c),
            "lift": {"conversion_pp": None if lift is None else {
                "estimate": lift.estimate * 100, "low": lift.low * 100, "high": lift.high * 100},
                "significant": bool(lift and lift.significant)},
        })
    return {"version": 1, "as_of": as_of.isoformat(), "confidence": 0.95, "rules": found}


def _group(customers: int, converted: int) -> dict[str, Any]:
    return {"customers": customers, "converted": converted,
            "conversion_rate": converted / customers if customers else None}

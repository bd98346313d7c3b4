"""Did the report recover the lift the demo injected?

The demo's simulated orders carry a known lift per rule (``responses.INJECTED``:
rule → (p_control, p_treated)). :func:`recovery_rows` reads the report's
document (``docs/report.md``: ``rules[].lift.conversion_pp`` with its 95 %
interval, in percentage points) and says for each rule whether the injected
lift lies inside the reported interval. Nothing here reads the database: the
check stands on the document alone, as a reader of the report would.

A 95 % interval misses the true value about one time in twenty by chance:
one "no" among many rules is what honest intervals look like; "no" on most
rules means the report is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Shown instead of "yes"/"no" when the report has no interval for a rule.
NOT_MEASURABLE = "not measurable"
#: Decimals of a point the injected lift is taken to (floating point's dust removed).
PRECISION = 9


@dataclass(frozen=True)
class Recovery:
    rule: str
    #: p_treated − p_control, in percentage points.
    injected_pp: float
    #: The report's estimate and 95 % interval (None when it has none).
    estimate_pp: float | None
    low_pp: float | None
    high_pp: float | None
    #: The injected lift lies inside the interval; None: not measurable.
    recovered: bool | None
    #: Why it is not measurable ("" when it is).
    reason: str = ""

    @property
    def verdict(self) -> str:
        if self.recovered is None:
            return f"{NOT_MEASURABLE}: {self.reason}"
        return "yes" if self.recovered else "no"


def recovery_rows(document: Mapping[str, Any], injected: Mapping[str, tuple[float, float]]) -> list[Recovery]:
    """One row per rule with an injected lift, in the document's order: a rule
    the document does not list planned nothing in its period (not measurable);
    rules without an injected lift are left out (nothing to compare with)."""
    rows = []
    listed = {rule["rule"] for rule in document.get("rules", [])}
    unlisted = [{"rule": name} for name in sorted(injected) if name not in listed]
    for rule in [*document.get("rules", []), *unlisted]:
        name = rule["rule"]
        if name not in injected:
            continue
        p_control, p_treated = injected[name]
        lift_pp = round((p_treated - p_control) * 100, PRECISION)  # 0.06 − 0.10 is not quite −0.04
        interval = (rule.get("lift") or {}).get("conversion_pp")
        if interval is None:
            rows.append(Recovery(name, lift_pp, None, None, None, None, _why_not(rule)))
            continue
        low, high = float(interval["low"]), float(interval["high"])
        rows.append(Recovery(name, lift_pp, float(interval["estimate"]), low, high, low <= lift_pp <= high))
    return rows


def _why_not(rule: Mapping[str, Any]) -> str:
    treated = (rule.get("treated") or {}).get("customers", 0)
    control = (rule.get("control") or {}).get("customers", 0)
    if not treated and not control:
        return "nothing planned"
    if not control:
        return "no control group"
    if not treated:
        return "nothing sent"
    return "too few to estimate"


def summary(rows: list[Recovery]) -> str:
    """One sentence: how many of the measurable rules were recovered."""
    measured = [r for r in rows if r.recovered is not None]
    if not measured:
        return "no rule had both messages sent and a control group: nothing to check"
    hits = sum(1 for r in measured if r.recovered)
    missed = [r.rule for r in measured if not r.recovered]
    return (f"the report recovered the injected lift of {hits} of {len(measured)} measurable rule(s)"
            + (f"; missed: {', '.join(missed)} (a 95% interval misses about 1 time in 20)" if missed else ""))


def render_recovery(rows: list[Recovery]) -> object:
    """A rich table: rule, injected lift, the report's estimate and interval, recovered."""
    from rich.table import Table

    table = Table(title="Did the report recover the injected lift?")
    for name in ("Rule", "Injected lift", "Report's estimate", "95% interval", "Recovered"):
        table.add_column(name, justify="left" if name in ("Rule", "Recovered") else "right")
    for r in rows:
        interval = "" if r.low_pp is None or r.high_pp is None else f"{r.low_pp:+.1f} to {r.high_pp:+.1f} pp"
        estimate = "" if r.estimate_pp is None else f"{r.estimate_pp:+.1f} pp"
        style = {True: "green", False: "red", None: "dim"}[r.recovered]
        table.add_row(r.rule, f"{r.injected_pp:+.1f} pp", estimate, interval, f"[{style}]{r.verdict}[/]")
    return table


__all__ = ["NOT_MEASURABLE", "Recovery", "recovery_rows", "render_recovery", "summary"]

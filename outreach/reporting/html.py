"""``outreach report --html``: the report's document (docs/report.md) as one
self-contained page — inline style, inline SVG charts drawn in Python, no
script, nothing fetched — that reads on a screen, a phone and paper.

Everything taken from the document is escaped (Jinja's autoescape; the charts
through ``Markup.format``): rule names and split values come from user data."""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader

from outreach.reporting import charts
from outreach.reporting import formats as f

#: The split dimensions in the order the page shows them, with their headings.
DIMENSIONS = {"channel": "Channel", "customer_type": "Customer type", "lifecycle_stage": "Lifecycle stage",
              "rfm_segment": "RFM segment", "value_tier": "Value tier", "locale": "Locale"}

_ENV = Environment(loader=PackageLoader("outreach.reporting", "templates"), autoescape=True,
                   undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(count=f.count, money=f.money, percent=f.percent, pp=f.pp, times=f.times, bounds=f.bounds,
                    estimate=f.estimate, share=f.share, verdict=f.verdict, when=f.when)
_ENV.globals.update(VERDICT_WORDS=f.VERDICT_WORDS, MISSING=f.MISSING)


def render_html(document: dict[str, Any]) -> str:
    """The page for ``document`` (version 1 of docs/report.md); missing parts are shown as missing."""
    rules = [r for r in document.get("rules") or [] if isinstance(r, dict)]
    names = [str(r.get("rule", "")) for r in rules]
    simulated = {k: int(f.number(v) or 0) for k, v in (document.get("simulated") or {}).items()}
    return _ENV.get_template("report.html.j2").render(
        doc=document,
        rules=[_rule_view(r, i) for i, r in enumerate(rules)],
        simulated=simulated if any(simulated.values()) else None,
        totals=_totals(rules),
        forest=charts.forest(_lift_rows(rules)) if rules else None,
        timeline=_timeline_view(document, names),
        splits=_splits_view(document.get("splits") or {}, names, rules),
    )


def _is_simulated(rule: dict[str, Any]) -> bool:
    return bool(f.number(rule.get("simulated_orders")))


def _rule_view(rule: dict[str, Any], index: int) -> dict[str, Any]:
    lift = rule.get("lift") or None
    return {"data": rule, "name": str(rule.get("rule", "")), "anchor": f"rule-{index + 1}",
            "lift": lift, "verdict": f.verdict(lift), "simulated": _is_simulated(rule),
            "funnel": charts.funnel(rule),
            "variants": [{"data": v, "verdict": f.verdict(v.get("lift"))}
                         for v in rule.get("variants") or [] if isinstance(v, dict)]}


def _totals(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's headline figures: sums over the rules (an interval does not add up: estimates only)."""
    def total(path: tuple[str, ...]) -> float:
        result = 0.0
        for rule in rules:
            value: Any = rule
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            result += f.number(value) or 0
        return result

    measured = [r for r in rules if ((r.get("lift") or {}).get("incremental_revenue") or {}).get("estimate")
                is not None]
    return {"sent": total(("funnel", "sent")), "converted": total(("treated", "converted")),
            "revenue": total(("treated", "revenue")), "cost": total(("cost", "total")),
            "incremental": total(("lift", "incremental_revenue", "estimate")), "measured": len(measured),
            "rules": len(rules)}


def _lift_rows(rules: list[dict[str, Any]]) -> list[charts.LiftRow]:
    rows = []
    for rule in rules:
        name = str(rule.get("rule", ""))
        rows.append(charts.LiftRow(name + (" (simulated)" if _is_simulated(rule) else ""), rule.get("lift")))
        for variant in rule.get("variants") or []:
            winner = " ★ winner" if variant.get("winner") else ""
            rows.append(charts.LiftRow(f"variant {variant.get('variant', '')}{winner}", variant.get("lift"),
                                       indent=True))
    return rows


def _timeline_view(document: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    entries = [e for e in document.get("timeline") or [] if isinstance(e, dict)]
    if not entries:
        return None
    currency = str(document.get("currency") or "")
    days = charts.days(entries, names)
    rules = charts.rule_order(entries, names)
    return {"chart": charts.revenue_over_time(entries, names, currency), "days": days,
            "legend": [(r, charts.rule_colour(i), charts.rule_colour(i, control=True)) for i, r in enumerate(rules)
                       if any(r == name for d in days for name, _, _ in d.treated + d.control)],
            "sums": [(d.date, sum(v for _, v, _ in d.treated), sum(v for _, v, _ in d.control)) for d in days]}


def _splits_view(splits: dict[str, Any], names: list[str], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    simulated = {str(r.get("rule")) for r in rules if _is_simulated(r)}
    order = {name: i for i, name in enumerate(names)}
    views = []
    for key in [*DIMENSIONS, *sorted(set(splits) - set(DIMENSIONS))]:
        rows = [r for r in splits.get(key) or [] if isinstance(r, dict)]
        if not rows:
            continue
        rows.sort(key=lambda r: (order.get(str(r.get("rule")), len(order)), str(r.get("rule")), str(r.get("value"))))
        domain = charts.split_domain(rows)
        views.append({"key": key, "title": DIMENSIONS.get(key, key.replace("_", " ").capitalize()),
                      "rows": [{"data": r, "simulated": str(r.get("rule")) in simulated,
                                "verdict": f.verdict(r.get("lift")),
                                "bar": charts.lift_bar(r.get("lift"), domain, f"{r.get('rule')} · {r.get('value')}")}
                               for r in rows]})
    return views


__all__ = ["render_html"]

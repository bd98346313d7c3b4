"""Report documents (docs/report.md, version 1) for the report's views to be tested on.

Realistic and self-consistent: funnels narrow step by step, the control group is
the rule's holdout, lifts and their 95% intervals follow from the conversions
(a normal approximation), the timeline adds up to each group's revenue. The
merger may replace ``report_document()`` by ``build_document`` over a database
filled by the factories; the edge cases below stay useful either way."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Any

Z95 = 1.959964
START = date(2026, 11, 20)


def interval(estimate: float, se: float) -> dict[str, float]:
    return {"estimate": round(estimate, 4), "low": round(estimate - Z95 * se, 4),
            "high": round(estimate + Z95 * se, 4)}


def group(customers: int, converted: int, revenue: float) -> dict[str, Any]:
    return {"customers": customers, "converted": converted,
            "conversion_rate": converted / customers if customers else 0.0,
            "revenue": f"{revenue:.2f}", "revenue_per_customer": f"{revenue / customers if customers else 0:.2f}"}


def lift(treated: dict[str, Any], control: dict[str, Any] | None, *, cost: float | None) -> dict[str, Any] | None:
    """The lift of treated over control, as the document gives it; None without a control group."""
    if control is None or control["customers"] < 2 or treated["customers"] < 2:
        return None
    p1, n1, p0, n0 = treated["conversion_rate"], treated["customers"], control["conversion_rate"], control["customers"]
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0) or 1e-9
    pp = interval((p1 - p0) * 100, se * 100)
    rpc1, rpc0 = float(treated["revenue_per_customer"]), float(control["revenue_per_customer"])
    rpc_se = max(abs(rpc1) * 0.9 / math.sqrt(n1) + abs(rpc0) * 0.9 / math.sqrt(n0), 1e-9)
    rpc = interval(rpc1 - rpc0, rpc_se)
    revenue = {k: round(v * n1, 2) for k, v in rpc.items()}
    significant = pp["low"] > 0 or pp["high"] < 0
    roi = None if not cost else {k: round(v * 0.4 / cost - 1, 2) for k, v in revenue.items()}
    if roi is not None:
        roi["low"], roi["high"] = min(roi["low"], roi["high"]), max(roi["low"], roi["high"])
    verdict = (f"significant: the campaign {'added' if pp['estimate'] > 0 else 'lost'} {abs(pp['estimate']):.1f} pp "
               f"(95% CI {pp['low']:.1f} to {pp['high']:.1f})" if significant else
               f"not significant: {pp['estimate']:+.1f} pp (95% CI {pp['low']:.1f} to {pp['high']:.1f})")
    return {"conversion_pp": pp, "revenue_per_customer": rpc,
            "incremental_conversions": {k: round(v / 100 * n1, 1) for k, v in pp.items()},
            "incremental_revenue": revenue, "incremental_roi": roi, "significant": significant,
            "verdict": verdict, "customers_needed": None if significant else n1 * 3}


def rule_entry(name: str, *, planned: int, holdout: float, treated_rate: float, control_rate: float,
               order_value: float, channels: tuple[str, ...] = ("email",), variants: tuple[str, ...] = (),
               simulated_orders: int = 0, seed: int = 1) -> dict[str, Any]:
    """One rule of the document, its funnel, groups, lift, cost and variants."""
    rng = random.Random(seed)
    held_out = round(planned * holdout / 100)
    sent = planned - held_out - planned // 100
    converted = round(sent * treated_rate)
    treated = group(sent, converted, converted * order_value)
    control = (group(held_out, round(held_out * control_rate), round(held_out * control_rate) * order_value * 0.9)
               if held_out else None)
    messages, fixed, discounts = sent * 0.08 * len(channels), 100.0, converted * 2.5
    total_cost = messages + fixed + discounts
    rule: dict[str, Any] = {
        "rule": name, "channels": list(channels), "holdout_percent": holdout, "margin": "0.40",
        "funnel": {"planned": planned, "held_out": held_out, "sent": sent, "skipped": planned // 200,
                   "failed": planned // 100 - planned // 200, "opened": round(sent * rng.uniform(0.3, 0.45)),
                   "clicked": round(sent * rng.uniform(0.12, 0.2)), "converted": converted,
                   "unsubscribed": round(sent * 0.004)},
        "treated": treated, "control": control,
        "lift": lift(treated, control, cost=total_cost),
        "cost": {"messages": f"{messages:.2f}", "fixed": f"{fixed:.2f}", "discounts": f"{discounts:.2f}",
                 "total": f"{total_cost:.2f}"},
        "last_touch": {"conversions": round(converted * 0.95), "revenue": f"{converted * 0.95 * order_value:.2f}",
                       "roi": round((converted * 0.95 * order_value - total_cost) / total_cost, 2)},
        "offers": None, "variants": [], "open_windows": rng.randint(0, 30), "simulated_orders": simulated_orders,
    }
    for i, variant in enumerate(variants):
        rate = treated_rate * (1 + 0.25 * (i - (len(variants) - 1) / 2))
        share = sent // len(variants)
        v_treated = group(share, round(share * rate), round(share * rate) * order_value)
        rule["variants"].append({"variant": variant, "weight": 100 // len(variants), "treated": v_treated,
                                 "lift": lift(v_treated, control, cost=total_cost / len(variants)),
                                 "winner": i == len(variants) - 1})
    return rule


def timeline(rules: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """Each rule's revenue per group spread over ``days`` days (it adds up to the group's revenue)."""
    rows = []
    for rule in rules:
        for group_name in ("treated", "control"):
            measured = rule[group_name]
            if measured is None:
                continue
            revenue, orders = float(measured["revenue"]), measured["converted"]
            weights = [1 + ((d * 7 + len(rule["rule"])) % 5) for d in range(days)]
            for d, w in enumerate(weights):
                rows.append({"date": (START + timedelta(days=d)).isoformat(), "rule": rule["rule"],
                             "group": group_name, "orders": orders * w // sum(weights),
                             "revenue": f"{revenue * w / sum(weights):.2f}"})
    return rows


def split_rows(rule: dict[str, Any], values: dict[str, float]) -> list[dict[str, Any]]:
    """The rule's groups cut by a dimension's values (shares of customers), with their lifts."""
    rows = []
    for value, share in values.items():
        t, c = rule["treated"], rule["control"]
        tilt = 1 + (len(value) % 3 - 1) * 0.3
        treated = group(round(t["customers"] * share), round(t["converted"] * share * tilt),
                        float(t["revenue"]) * share * tilt)
        control = group(round(c["customers"] * share), round(c["converted"] * share),
                        float(c["revenue"]) * share) if c else None
        rows.append({"rule": rule["rule"], "value": value, "treated": treated, "control": control,
                     "lift": lift(treated, control, cost=None)})
    return rows


def report_document(*, simulated: bool = True, days: int = 14) -> dict[str, Any]:
    """A report of four rules: a clear win with A/B variants (simulated orders), a rule that
    is not significant, one that lost customers, one without a control group."""
    rules = [
        rule_entry("winback", planned=12000, holdout=10, treated_rate=0.108, control_rate=0.05, order_value=434,
                   channels=("email", "sms"), variants=("A", "B"), simulated_orders=95 if simulated else 0),
        rule_entry("birthday", planned=3000, holdout=10, treated_rate=0.061, control_rate=0.055, order_value=260,
                   seed=2),
        rule_entry("upsell-premium", planned=8000, holdout=15, treated_rate=0.031, control_rate=0.052,
                   order_value=890, channels=("sms",), seed=3),
        rule_entry("welcome", planned=900, holdout=0, treated_rate=0.14, control_rate=0, order_value=120, seed=4),
    ]
    rules[0]["offers"] = {"codes_given": 880, "redemptions": 60, "revenue": "30000.00", "discount": "220.00"}
    return {
        "version": 1, "generated_at": "2026-12-04T08:00:00", "as_of": "2026-12-04T08:00:00",
        "currency": "CNY", "rates": {"USD": "7.10", "EUR": "7.72", "CNY": "1"},
        "unconverted": [{"currency": "JPY", "orders": 3, "amount": "4500.00"}],
        "confidence": 0.95, "period": {"since": "2026-11-01T00:00:00", "until": None},
        "simulated": {"orders": 95 if simulated else 0, "events": 900 if simulated else 0},
        "warnings": ["welcome: no control group (holdout_percent is 0) — its lift cannot be measured",
                     "birthday: 14 messages still inside their attribution window — figures may grow"],
        "rules": rules,
        "timeline": timeline(rules, days),
        "splits": {
            "channel": split_rows(rules[0], {"email": 0.6, "sms": 0.4}),
            "customer_type": [*split_rows(rules[0], {"retail": 0.7, "wholesale": 0.3}),
                              *split_rows(rules[2], {"retail": 0.8, "wholesale": 0.2})],
            "lifecycle_stage": [], "rfm_segment": [], "value_tier": [],
            "locale": split_rows(rules[1], {"en": 0.5, "zh_CN": 0.5}),
        },
    }


def empty_document() -> dict[str, Any]:
    """A report before anything was sent: no rules, no timeline, no splits at all."""
    return {"version": 1, "generated_at": "2026-12-04T08:00:00", "as_of": "2026-12-04T08:00:00",
            "currency": "CNY", "rates": {"CNY": "1"}, "unconverted": [], "confidence": 0.95,
            "period": {"since": None, "until": None}, "simulated": {"orders": 0, "events": 0},
            "warnings": [], "rules": [], "timeline": []}

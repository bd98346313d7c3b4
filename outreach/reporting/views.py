"""The report's document shown as terminal tables and as CSV (docs/report.md).

Both read only the document (``reporting.document``): the table, the CSV,
the JSON and the HTML page never disagree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

#: CSV columns, one row per (rule, variant or "all", split dimension or "all", value or "all").
CSV_COLUMNS = (
    "rule", "variant", "dimension", "value", "currency",
    "treated_customers", "treated_converted", "treated_conversion_rate", "treated_revenue",
    "treated_revenue_per_customer",
    "control_customers", "control_converted", "control_conversion_rate", "control_revenue",
    "control_revenue_per_customer",
    "lift_pp", "lift_pp_low", "lift_pp_high",
    "revenue_per_customer_lift", "revenue_per_customer_lift_low", "revenue_per_customer_lift_high",
    "incremental_conversions", "incremental_conversions_low", "incremental_conversions_high",
    "incremental_revenue", "incremental_revenue_low", "incremental_revenue_high",
    "incremental_roi", "incremental_roi_low", "incremental_roi_high",
    "significant", "customers_needed", "verdict",
    "cost_total", "last_touch_conversions", "last_touch_revenue", "last_touch_roi", "simulated_orders",
)
_INTERVALS = (("lift_pp", "conversion_pp"), ("revenue_per_customer_lift", "revenue_per_customer"),
              ("incremental_conversions", "incremental_conversions"),
              ("incremental_revenue", "incremental_revenue"), ("incremental_roi", "incremental_roi"))
ALL = "all"


def _flat(rule: str, variant: str, dimension: str, value: str, currency: str, entry: dict[str, Any],
          control: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"rule": rule, "variant": variant, "dimension": dimension, "value": value,
                           "currency": currency}
    for side, figures in (("treated", entry["treated"]), ("control", control)):
        for name in ("customers", "converted", "conversion_rate", "revenue", "revenue_per_customer"):
            row[f"{side}_{name}"] = figures[name]
    lift = entry["lift"]
    for column, key in _INTERVALS:
        found = lift[key] or {}
        row[column], row[f"{column}_low"], row[f"{column}_high"] = (
            found.get("estimate"), found.get("low"), found.get("high"))
    row.update(significant=lift["significant"], customers_needed=lift["customers_needed"], verdict=lift["verdict"])
    return row


def csv_rows(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    currency = doc["currency"]
    for section in doc["rules"]:
        row = _flat(section["rule"], ALL, ALL, ALL, currency, section, section["control"])
        row.update(cost_total=section["cost"]["total"], last_touch_conversions=section["last_touch"]["conversions"],
                   last_touch_revenue=section["last_touch"]["revenue"], last_touch_roi=section["last_touch"]["roi"],
                   simulated_orders=section["simulated_orders"])
        yield row
        for variant in section["variants"]:
            yield {**_flat(section["rule"], variant["variant"], ALL, ALL, currency, variant, section["control"]),
                   "cost_total": variant["cost"]}
    for dimension, entries in doc["splits"].items():
        for entry in entries:
            yield _flat(entry["rule"], ALL, dimension, entry["value"], currency, entry, entry["control"])


def render_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(doc):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


# ------------------------------------------------------------------ terminal
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _ci(found: dict[str, float] | None, fmt: str = "{:+,.1f}", suffix: str = "") -> str:
    if found is None:
        return "n/a"
    return (f"{fmt.format(found['estimate'])}{suffix} [{fmt.format(found['low'])}, "
            f"{fmt.format(found['high'])}]")


def _money(text: str | None) -> str:
    return "n/a" if text is None else f"{float(text):,.2f}"


def render_tables(doc: dict[str, Any], *, split: str | None = None) -> list[object]:
    """Renderables for ``rich``: the incremental table, last touch and offers,
    variants (when any), the split asked for, then the warnings."""
    from rich.table import Table
    from rich.text import Text

    cur = doc["currency"]
    since, until = doc["period"]["since"], doc["period"]["until"]
    period = f", messages planned {since or '…'} → {until or '…'}" if since or until else ""
    main = Table(title=f"Incremental results: sent vs held-out control group ({cur}, 95% CI{period})")
    for name in ("Rule", "Sent", "Control", "Conv% sent", "Conv% control", "Lift pp [95% CI]",
                 f"Incr. revenue {cur} [95% CI]", "Incr. ROI [95% CI]", "Verdict"):
        main.add_column(name, justify="left" if name in ("Rule", "Verdict") else "right",
                        overflow="fold")
    for r in doc["rules"]:
        main.add_row(r["rule"], f"{r['treated']['customers']:,}", f"{r['control']['customers']:,}",
                     _pct(r["treated"]["conversion_rate"]), _pct(r["control"]["conversion_rate"]),
                     _ci(r["lift"]["conversion_pp"]), _ci(r["lift"]["incremental_revenue"], "{:+,.0f}"),
                     _ci(r["lift"]["incremental_roi"], "{:+,.1f}", "x"), r["lift"]["verdict_short"])
    second = Table(title=f"Secondary: last-touch attribution and redeemed codes ({cur})")
    for name in ("Rule", "Opened", "Clicked", "Unsubs", "Last-touch orders", "Last-touch revenue",
                 "Cost (msgs+fixed+discounts)", "Last-touch ROI", "Codes given", "Redeemed", "Redeemed revenue"):
        second.add_column(name, justify="left" if name == "Rule" else "right")
    for r in doc["rules"]:
        offers = r["offers"] or {}
        roi = r["last_touch"]["roi"]
        second.add_row(r["rule"], f"{r['funnel']['opened']:,}", f"{r['funnel']['clicked']:,}",
                       f"{r['funnel']['unsubscribed']:,}", f"{r['last_touch']['conversions']:,}",
                       _money(r["last_touch"]["revenue"]), _money(r["cost"]["total"]),
                       "n/a" if roi is None else f"{roi:,.1f}x", str(offers.get("codes_given", "-")),
                       str(offers.get("redemptions", "-")), _money(offers.get("revenue")))
    shown: list[object] = [main, *[Text(f"{r['rule']}: {r['lift']['verdict']}") for r in doc["rules"]], second]
    variants = [(r["rule"], v) for r in doc["rules"] for v in r["variants"]]
    if variants:
        table = Table(title="A/B variants, each against the control group")
        for name in ("Rule", "Variant", "Weight", "Sent", "Conv%", "Lift pp [95% CI]",
                     f"Incr. revenue {cur} [95% CI]", "Winner", "Verdict"):
            table.add_column(name, justify="left" if name in ("Rule", "Variant", "Verdict") else "right",
                             overflow="fold")
        for rule, v in variants:
            table.add_row(rule, v["variant"], "" if v["weight"] is None else f"{v['weight']:g}",
                          f"{v['treated']['customers']:,}", _pct(v["treated"]["conversion_rate"]),
                          _ci(v["lift"]["conversion_pp"]), _ci(v["lift"]["incremental_revenue"], "{:+,.0f}"),
                          "yes" if v["winner"] else "", v["lift"]["verdict_short"])
        shown.append(table)
    if split is not None:
        table = Table(title=f"Split by {split}")
        for name in ("Rule", split, "Sent", "Control", "Conv% sent", "Conv% control", "Lift pp [95% CI]",
                     "Verdict"):
            table.add_column(name, justify="left" if name in ("Rule", split, "Verdict") else "right",
                             overflow="fold")
        for e in doc["splits"].get(split, []):
            table.add_row(e["rule"], e["value"], f"{e['treated']['customers']:,}", f"{e['control']['customers']:,}",
                          _pct(e["treated"]["conversion_rate"]), _pct(e["control"]["conversion_rate"]),
                          _ci(e["lift"]["conversion_pp"]), e["lift"]["verdict_short"])
        shown.append(table)
    for row in doc["unconverted"]:
        shown.append(Text(f"left out: {row['orders']} orders in {row['currency']} ({row['amount']}), no rate"))
    for warning in doc["warnings"]:
        shown.append(Text(f"warning: {warning}", style="yellow"))
    return shown

"""The report's charts as inline SVG, drawn here in Python: nothing to fetch, no
script, printable. Each chart has a ``<title>`` and an ``aria-label``, each mark
its own ``<title>`` (what a screen reader or a hover tells), and the figures are
written beside the marks. Every value from data is escaped (``Markup.format``).

Marks carry a class the tests count: ``bar`` (funnel and timeline), ``estimate``
(a lift's point; its ``whisker`` is the 95% interval)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from outreach.reporting import formats as f

#: Bar colours, one per rule in turn; muted so that verdict colours stand out.
RULE_COLOURS = ("#2f5d8a", "#c07a2c", "#4f8a6b", "#7d5a94", "#3c8c9c", "#a3544f", "#6b778c", "#9a8a3a")
#: The lighter tint of a rule's colour that its control group is drawn in.
CONTROL_TINT = 0.55
FUNNEL_STEPS = (("planned", "Planned"), ("sent", "Sent"), ("opened", "Opened"), ("clicked", "Clicked"),
                ("converted", "Converted"))
FONT = "font-family:inherit"


def rule_colour(index: int, *, control: bool = False) -> str:
    colour = RULE_COLOURS[index % len(RULE_COLOURS)]
    if not control:
        return colour
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * CONTROL_TINT):02x}" for c in rgb)


def _svg(width: int, height: int, label: str, body: Iterable[Markup], css_class: str) -> Markup:
    return Markup(
        '<svg class="chart {}" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg" style="{}"><title>{}</title>{}</svg>'
    ).format(css_class, width, height, width, height, label, FONT, label, Markup("").join(body))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


# --- The funnel of one rule --------------------------------------------------------------------------

def funnel(rule: dict[str, Any]) -> Markup:
    """Planned → sent → opened → clicked → converted, each bar with its count and rate; the held-out
    control group beside, on the same scale."""
    steps = rule.get("funnel") or {}
    width, label_w, bar_w, row = 480, 80, 220, 30
    top = max(f.number(steps.get("planned")) or 0, *(f.number(steps.get(k)) or 0 for k, _ in FUNNEL_STEPS), 1)
    rows: list[tuple[str, str, float, str]] = []
    for key, name in FUNNEL_STEPS:
        value = steps.get(key)
        base_key = "planned" if key in ("planned", "sent") else "sent"
        rate = "" if key == "planned" else f" · {f.share(value, steps.get(base_key))} of {base_key}"
        rows.append((key, name, f.number(value) or 0, f"{f.count(value)}{rate}"))
    held = steps.get("held_out")
    rows.append(("held_out", "Held out", f.number(held) or 0,
                 f"{f.count(held)} · control group, not sent"))
    height = row * len(rows) + 10
    marks = []
    for i, (key, name, value, text) in enumerate(rows):
        y = 4 + i * row + (8 if key == "held_out" else 0)
        length = max(value / top * bar_w, 0)
        colour = {"converted": "#1b7f4b", "held_out": "#b8c0c8"}.get(key, "#2f5d8a")
        marks.append(Markup(
            '<text x="{}" y="{}" text-anchor="end" class="axis-label">{}</text>'
            '<rect class="bar funnel-{}" x="{}" y="{}" width="{:.1f}" height="{}" fill="{}" rx="2">'
            '<title>{}: {}</title></rect>'
            '<text x="{:.1f}" y="{}" class="value">{}</text>'
        ).format(label_w - 8, y + 15, name, key, label_w, y + 2, length, row - 10, colour, name, text,
                 label_w + length + 6, y + 15, text))
    if rows:
        marks.insert(0, Markup('<line x1="{}" x2="{}" y1="2" y2="{}" class="axis"/>').format(
            label_w, label_w, height - 4))
    return _svg(width, height, f"Funnel of {rule.get('rule', '')}", marks, "funnel")


# --- Revenue over time ---------------------------------------------------------------------------------

def rule_order(timeline: Sequence[dict[str, Any]], rules: Sequence[str]) -> list[str]:
    """The report's rules in its order, then any other rule of the timeline: the order of the colours."""
    return list(dict.fromkeys([*rules, *sorted({str(e.get("rule")) for e in timeline})]))


@dataclass(frozen=True)
class Day:
    date: str
    treated: list[tuple[str, float, int]]  # (rule, revenue, orders) in rule order
    control: list[tuple[str, float, int]]


def days(timeline: Sequence[dict[str, Any]], rules: Sequence[str]) -> list[Day]:
    """The timeline summed per (day, rule, group), days in order, rules in the report's order."""
    totals: dict[tuple[str, str, str], tuple[float, int]] = {}
    order = rule_order(timeline, rules)
    for entry in timeline:
        key = (str(entry.get("date")), str(entry.get("rule")), str(entry.get("group")))
        revenue, orders = totals.get(key, (0.0, 0))
        totals[key] = (revenue + (f.number(entry.get("revenue")) or 0), orders + int(entry.get("orders") or 0))
    result = []
    for date in sorted({k[0] for k in totals}):
        per_group = {g: [(r, *totals[(date, r, g)]) for r in order if (date, r, g) in totals]
                     for g in ("treated", "control")}
        result.append(Day(date, per_group["treated"], per_group["control"]))
    return result


def revenue_over_time(timeline: Sequence[dict[str, Any]], rules: Sequence[str], currency: str) -> Markup:
    """Per day two stacked bars: the treated groups' attributed revenue (a colour per rule) and the
    control groups' (the same colours, lighter)."""
    per_day = days(timeline, rules)
    width, height, left, bottom, top_pad = 1000, 300, 64, 34, 14
    plot_w, plot_h = width - left - 12, height - bottom - top_pad
    peak = max([sum(v for _, v, _ in d.treated) for d in per_day] +
               [sum(v for _, v, _ in d.control) for d in per_day] + [0.0])
    ticks = nice_ticks(0, peak or 1, 4)
    scale = plot_h / ticks[-1]
    band = plot_w / max(len(per_day), 1)
    bar = min(26.0, band * 0.38)
    colour_of = {r: i for i, r in enumerate(rule_order(timeline, rules))}
    marks = []
    for t in ticks:
        y = top_pad + plot_h - t * scale
        marks.append(Markup('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" class="grid"/>'
                            '<text x="{}" y="{:.1f}" text-anchor="end" class="axis-label">{}</text>').format(
            left, width - 12, y, y, left - 6, y + 4, f.compact(t)))
    label_every = max(1, math.ceil(len(per_day) / 10))
    for i, day in enumerate(per_day):
        x0 = left + i * band + band / 2
        for offset, group, stack in ((-bar - 1.0, "treated", day.treated), (1.0, "control", day.control)):
            base = float(top_pad + plot_h)
            for rule, revenue, orders in stack:
                h = revenue * scale
                base -= h
                marks.append(Markup(
                    '<rect class="bar timeline-{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
                    '<title>{} · {} · {}: {} {} ({} orders)</title></rect>').format(
                    group, x0 + offset, base, bar, h, rule_colour(colour_of[rule], control=group == "control"),
                    day.date, rule, group, f.money(revenue), currency, f.count(orders)))
        if i % label_every == 0:
            marks.append(Markup('<text x="{:.1f}" y="{}" text-anchor="middle" class="axis-label">{}</text>').format(
                x0, height - bottom + 18, day.date[5:] if len(day.date) >= 10 else day.date))
    marks.append(Markup('<line x1="{}" x2="{}" y1="{}" y2="{}" class="axis"/>').format(
        left, width - 12, top_pad + plot_h, top_pad + plot_h))
    return _svg(width, height, f"Attributed revenue per day in {currency}: treated and control groups",
                marks, "timeline")


# --- Lifts with their intervals -------------------------------------------------------------------------

@dataclass(frozen=True)
class LiftRow:
    label: str
    lift: dict[str, Any] | None
    indent: bool = False


def _domain(rows: Iterable[dict[str, Any] | None]) -> tuple[float, float]:
    values = [0.0]
    for lift in rows:
        interval = (lift or {}).get("conversion_pp") or {}
        values += [v for v in (f.number(interval.get(k)) for k in ("low", "high", "estimate")) if v is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 1.0
    return low - pad, high + pad


def _interval_marks(lift: dict[str, Any] | None, x: Any, y: float, label: str, *, small: bool = False) -> Markup:
    interval = (lift or {}).get("conversion_pp") or {}
    point, low, high = (f.number(interval.get(k)) for k in ("estimate", "low", "high"))
    if point is None:
        return Markup("")
    verdict = f.verdict(lift)
    low = point if low is None else low
    high = point if high is None else high
    cap = 4 if small else 6
    return Markup(
        '<g class="lift lift-{}"><title>{}: {} (95% CI {}) — {}</title>'
        '<line class="whisker" x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}"/>'
        '<line class="whisker" x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}"/>'
        '<line class="whisker" x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}"/>'
        '<circle class="estimate" cx="{:.1f}" cy="{}" r="{}"/></g>'
    ).format(verdict, label, f.pp(point), f.bounds(interval), f.VERDICT_WORDS[verdict],
             x(low), x(high), y, y, x(low), x(low), y - cap, y + cap, x(high), x(high), y - cap, y + cap,
             x(point), y, 3.5 if small else 5)


def forest(rows: Sequence[LiftRow]) -> Markup:
    """One line per rule and A/B variant: the lift in conversion (percentage points) as a point, its
    95% interval as a whisker, the zero line of "no effect"; coloured by verdict, figures on the right."""
    width, label_w, text_w, row, top_pad, bottom = 1000, 210, 250, 28, 8, 30
    plot_w = width - label_w - text_w
    low, high = _domain(r.lift for r in rows)
    ticks = nice_ticks(low, high, 5)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    def x(v: float) -> float:
        return label_w + (v - low) / (high - low) * plot_w

    height = top_pad + row * max(len(rows), 1) + bottom
    marks = []
    for t in ticks:
        marks.append(Markup('<line x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}" class="{}"/>'
                            '<text x="{:.1f}" y="{}" text-anchor="middle" class="axis-label">{}</text>').format(
            x(t), x(t), top_pad, height - bottom, "zero" if t == 0 else "grid", x(t), height - bottom + 16,
            f"{t:+g}" if t else "0"))
    for i, r in enumerate(rows):
        y = top_pad + i * row + row / 2
        interval = (r.lift or {}).get("conversion_pp")
        text = (f"{f.pp(interval.get('estimate'))}  ({f.bounds(interval)})" if interval
                else "not measured: no control group")
        marks.append(Markup('<text x="{}" y="{:.1f}" class="{}">{}</text>'
                            '<text x="{}" y="{:.1f}" class="value{}">{}</text>').format(
            16 if r.indent else 0, y + 4, "axis-label" if r.indent else "row-label", r.label,
            width - text_w + 10, y + 4, "" if interval else " muted", text))
        marks.append(_interval_marks(r.lift, x, y, r.label))
    return _svg(width, height, "Lift in conversion with its 95% interval, per rule and A/B variant",
                marks, "forest")


def lift_bar(lift: dict[str, Any] | None, domain: tuple[float, float], label: str) -> Markup:
    """A split's lift as a small inline interval on the scale shared by its dimension."""
    width, height = 180, 22
    low, high = domain

    def x(v: float) -> float:
        return 6 + (v - low) / (high - low) * (width - 12)

    zero = Markup('<line class="zero" x1="{:.1f}" x2="{:.1f}" y1="2" y2="{}"/>').format(x(0), x(0), height - 2)
    return _svg(width, height, f"Lift of {label}", [zero, _interval_marks(lift, x, height / 2, label, small=True)],
                "inline")


def split_domain(rows: Iterable[dict[str, Any]]) -> tuple[float, float]:
    return _domain(r.get("lift") for r in rows)

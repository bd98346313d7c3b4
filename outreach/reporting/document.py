"""The ROI report as one document (docs/report.md, version 1): what the
terminal table, ``--format json|csv`` and the HTML page all show.

    from outreach.reporting.document import build_document
    doc = build_document(engine, settings, now=utcnow())             # configuration from settings
    doc = document(engine, money=Money("CNY", {"USD": Decimal("7.10")}), now=now)   # or given

Incremental first: per rule (and per A/B variant, and per value of each
split) the sent messages are compared with the held-out control group over
the same windows; last-touch attribution and redeemed coupon codes follow as
secondary views. Every figure is added up by the database in a few grouped
statements (``store.variants``, ``store.report_rows``, ``store.redemptions``);
this module only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.config import Settings
from outreach.domain import EventType, MessageStatus
from outreach.errors import ConfigError
from outreach.reporting.measures import Arm, Context, control_warning, group, lift
from outreach.reporting.money import Money, amount, rate_text, resolve_money
from outreach.reporting.offers import Offers, offers_of
from outreach.rules.loader import load_policy, rules_folder
from outreach.stats import CONFIDENCE
from outreach.store import report_rows as rows
from outreach.store.variants import Scope, VariantOutcome, message_counts, variant_outcomes

VERSION = 1
#: Every dimension the report can split by, in the order the document lists them.
DIMENSIONS = tuple(rows.SPLITS)


def build_document(engine: Engine, settings: Settings, *, now: datetime, since: datetime | None = None,
                   until: datetime | None = None, splits: Sequence[str] | None = None,
                   timeline: bool = True) -> dict[str, Any]:
    """The document, configured from ``settings``: the reporting currency
    (``report_currency``) and rates (rules/currency.yaml), the default margin
    (rules/policy.yaml ``margin:``). ``now``: the moment windows are judged
    against; ``since``/``until``: only messages planned in [since, until);
    ``splits``: the dimensions to split by (None: all of ``DIMENSIONS``);
    ``timeline``: False leaves out revenue per day (``"timeline": null``),
    which only the page and ``--format json`` show."""
    folder = rules_folder(settings.rules_dir)
    money = resolve_money(folder, settings.report_currency)
    margin = load_policy(folder).margin if folder.is_dir() else Decimal(1)
    return document(engine, money=money, default_margin=margin, now=now, since=since, until=until, splits=splits,
                    timeline=timeline)


def document(engine: Engine, *, money: Money, now: datetime, default_margin: Decimal = Decimal(1),
             since: datetime | None = None, until: datetime | None = None,
             splits: Sequence[str] | None = None, timeline: bool = True) -> dict[str, Any]:
    """The document from explicit money and margin (see :func:`build_document`)."""
    dims = DIMENSIONS if splits is None else tuple(splits)
    unknown = [d for d in dims if d not in rows.SPLITS]
    if unknown:
        raise ConfigError(f"cannot split by {', '.join(unknown)} (hint: one of {', '.join(DIMENSIONS)})")
    scope = Scope(since=since, until=until)
    with Session(engine) as session:
        counts = message_counts(session, scope, now=now)
        funnel = rows.funnel(session, scope=scope, counts=counts)
        # The arms of each rule, and split: the same figures per value of every dimension (they add up to the arms).
        cells = variant_outcomes(session, now=now, rates=money.rates, since=since, until=until, counts=counts)
        split = variant_outcomes(session, now=now, rates=money.rates, since=since, until=until,
                                 by=[rows.SPLITS[d] for d in dims]) if dims else []
        rule_ids = sorted({rule for rule, _, _ in funnel.statuses})
        rules = rows.rules_of(session, rule_ids)
        touch = rows.last_touch(session, scope=scope, rates=money.rates)
        days = rows.timeline(session, scope=scope, rates=money.rates) if timeline else None
        odd = rows.exceptions(session, scope=scope, rates=money.rates)
        offers = offers_of(session, money, scope=scope)
    warnings: list[str] = []
    names = {rule_id: name for rule_id, name, _, _ in rules}
    unconverted = [{"currency": c.currency, "orders": c.orders, "amount": amount(c.amount)} for c in odd.unconverted]
    for row in unconverted:
        warnings.append(f"{row['orders']} orders in {row['currency']} ({row['amount']}) have no rate and are left "
                        f"out (hint: add '{row['currency']}: <value in {money.currency}>' under rates: in "
                        "rules/currency.yaml)")
    warnings.extend(offers.warnings)
    simulated = {"orders": odd.simulated_orders,
                 "events": sum(funnel.simulated_events.values())}
    if simulated["orders"] or simulated["events"]:
        warnings.append(f"this report counts {simulated['orders']} simulated orders and {simulated['events']} "
                        "simulated events (demo data, not customers' behaviour)")
    sections = [_rule(rule_id, name, definition, winner, cells=cells, funnel=funnel, touch=touch,
                      simulated_orders=odd.simulated_by_rule.get(rule_id, 0),
                      offers=offers, money=money, default_margin=default_margin, warnings=warnings)
                for rule_id, name, definition, winner in rules]
    return {
        "version": VERSION, "generated_at": _iso(utcnow()), "as_of": _iso(now), "currency": money.currency,
        "rates": {code: rate_text(rate) for code, rate in sorted(money.rates.items())}, "unconverted": unconverted,
        "confidence": CONFIDENCE, "period": {"since": _iso(since), "until": _iso(until)}, "simulated": simulated,
        "warnings": warnings, "rules": sections,
        "timeline": None if days is None else [
            {"date": d.day.isoformat(), "rule": names[d.rule_id], "group": _arm_name(d.held_out), "orders": d.orders,
             "revenue": amount(d.revenue), "simulated_orders": d.simulated_orders}
            for d in days if d.rule_id in names],
        "splits": {dim: _splits(split, dims.index(dim), sections, names) for dim in dims},
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=None, microsecond=0).isoformat()


def _arm_name(held_out: bool) -> str:
    return "control" if held_out else "treated"


def _arm(cell: VariantOutcome) -> Arm:
    return Arm(cell.measured, cell.converted, cell.revenue, cell.revenue_squares, cell.open_windows)


def _sum(cells: Sequence[VariantOutcome]) -> Arm:
    total = Arm()
    for cell in cells:
        total = total + _arm(cell)
    return total


def _rule(rule_id: int, name: str, definition: dict[str, Any], winner: str | None, *,
          cells: list[VariantOutcome], funnel: rows.FunnelRows, touch: dict[int, tuple[int, Decimal]],
          simulated_orders: int, offers: Offers, money: Money, default_margin: Decimal,
          warnings: list[str]) -> dict[str, Any]:
    mine = [c for c in cells if c.rule_id == rule_id]
    treated = _sum([c for c in mine if not c.held_out])
    control = _sum([c for c in mine if c.held_out])
    holdout = float(definition.get("holdout_percent") or 0)
    margin = Decimal(str(definition["margin"])) if definition.get("margin") is not None else default_margin
    fixed = Decimal(str(definition.get("fixed_cost") or 0))
    message_cost = sum((v for (rule, _), v in funnel.cost.items() if rule == rule_id), Decimal(0))
    discounts = offers.discount(name)
    total = message_cost + fixed + discounts
    ctx = Context(currency=money.currency, margin=margin, cost=total, holdout_percent=holdout)
    if (warning := control_warning(name, control, holdout)) is not None:
        warnings.append(warning)
    conversions, attributed = touch.get(rule_id, (0, Decimal(0)))
    sent = funnel.count(rule_id, MessageStatus.SENT)
    weights = {str(v.get("name")): v.get("weight") for v in definition.get("variants") or []}
    variants = []
    for variant in sorted({c.variant for c in mine if not c.held_out and c.variant is not None}):
        arm = _sum([c for c in mine if not c.held_out and c.variant == variant])
        sent_here = sum(n for (r, v, s), n in funnel.statuses.items()
                        if r == rule_id and v == variant and s is MessageStatus.SENT)
        # The fixed cost is shared by the variants in proportion to what each sent.
        cost = (funnel.cost.get((rule_id, variant), Decimal(0)) + offers.discount(name, variant)
                + (fixed * sent_here / sent if sent else Decimal(0)))
        variants.append({"variant": variant, "weight": weights.get(variant), "treated": group(arm),
                         "lift": lift(arm, control, Context(money.currency, margin, cost, holdout)),
                         "cost": amount(cost), "offers": offers.section(name, variant), "winner": variant == winner})
    return {
        "rule": name, "channels": list(definition.get("channels") or []), "holdout_percent": holdout,
        "margin": str(margin),
        "funnel": {"planned": sum(n for (r, _, _), n in funnel.statuses.items() if r == rule_id),
                   "held_out": funnel.count(rule_id, MessageStatus.HELD_OUT), "sent": sent,
                   "skipped": funnel.count(rule_id, MessageStatus.SKIPPED),
                   "failed": funnel.count(rule_id, MessageStatus.FAILED),
                   "opened": funnel.events.get((rule_id, EventType.OPEN), 0),
                   "clicked": funnel.events.get((rule_id, EventType.CLICK), 0),
                   "converted": treated.converted,
                   "unsubscribed": funnel.events.get((rule_id, EventType.UNSUBSCRIBE), 0)},
        "treated": group(treated), "control": group(control), "lift": lift(treated, control, ctx),
        "cost": {"messages": amount(message_cost), "fixed": amount(fixed), "discounts": amount(discounts),
                 "total": amount(total)},
        "last_touch": {"conversions": conversions, "revenue": amount(attributed),
                       "roi": float((attributed * margin - total) / total) if total else None},
        "offers": offers.section(name),
        "variants": variants,
        "open_windows": treated.open_windows + control.open_windows,
        "simulated_orders": simulated_orders,
    }


def _value(value: Any) -> str:
    if value is None:
        return "unknown"
    return str(getattr(value, "value", value))


def _splits(cells: list[VariantOutcome], index: int, sections: list[dict[str, Any]],
            names: dict[int, str]) -> list[dict[str, Any]]:
    """Per rule × value of one dimension: treated, control and lift (no cost is split: no ROI)."""
    arms: dict[tuple[str, str, bool], Arm] = {}
    for cell in cells:
        key = (names.get(cell.rule_id, cell.rule), _value(cell.group[index]), cell.held_out)
        arms[key] = arms.get(key, Arm()) + _arm(cell)
    by_rule = {s["rule"]: s for s in sections}
    found = []
    for rule, value in sorted({(rule, value) for rule, value, _ in arms}):
        treated, control = arms.get((rule, value, False), Arm()), arms.get((rule, value, True), Arm())
        section = by_rule.get(rule, {})
        ctx = Context(currency="", margin=Decimal(section.get("margin", 1)), cost=Decimal(0),
                      holdout_percent=float(section.get("holdout_percent", 0)), costed=False)
        found.append({"rule": rule, "value": value, "treated": group(treated), "control": group(control),
                      "lift": lift(treated, control, ctx)})
    return found


__all__ = ["DIMENSIONS", "VERSION", "build_document", "document"]

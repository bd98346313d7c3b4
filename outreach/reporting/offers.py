"""Coupon codes in the report: per rule and A/B variant, the codes given,
the orders that redeemed them (exact attribution) and the discounts they
cost, converted into the reporting currency (``store.redemptions``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, true
from sqlalchemy.orm import Session

from outreach.reporting.money import Money, amount
from outreach.store.models import Message
from outreach.store.redemptions import codes_given, offer_results
from outreach.store.variants import Scope

#: The key of a rule's figures over all its variants.
ALL: Any = object()


@dataclass
class _Figures:
    codes_given: int = 0
    redemptions: int = 0
    revenue: Decimal = Decimal(0)
    #: Discounts of redemptions and of duplicate uses: both were given.
    discount: Decimal = Decimal(0)
    duplicate_uses: int = 0


@dataclass
class Offers:
    """(rule, variant or ALL) → figures in the reporting currency, and what could not be converted."""

    figures: dict[tuple[str, Any], _Figures] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def discount(self, rule: str, variant: Any = ALL) -> Decimal:
        found = self.figures.get((rule, variant))
        return found.discount if found else Decimal(0)

    def section(self, rule: str, variant: Any = ALL) -> dict[str, Any] | None:
        """``offers`` of the document (None: the rule gave no code)."""
        found = self.figures.get((rule, variant))
        if found is None:
            return None
        return {"codes_given": found.codes_given, "redemptions": found.redemptions,
                "revenue": amount(found.revenue), "discount": amount(found.discount),
                "duplicate_uses": found.duplicate_uses}


def offers_of(session: Session, money: Money, *, scope: Scope) -> Offers:
    """Of the messages in ``scope``: redemptions per (rule, variant, currency)
    and codes given per (rule, variant)."""
    offers = Offers()
    for (rule, *group), count in codes_given(session, by_variant=True, scope=scope).items():
        for key in ((rule, group[0]), (rule, ALL)):
            offers.figures.setdefault(key, _Figures()).codes_given += count
    left_out: dict[str, Decimal] = {}
    for row in offer_results(session, by=[Message.variant.expression], messages=and_(true(), *scope.messages)):
        revenue = money.convert(row.revenue, row.currency)
        discount = money.convert(row.discount + row.duplicate_discount, row.currency)
        if revenue is None or discount is None:
            left_out[row.currency] = left_out.get(row.currency, Decimal(0)) + row.discount + row.duplicate_discount
            continue
        for key in ((row.rule, row.group[0]), (row.rule, ALL)):
            figures = offers.figures.setdefault(key, _Figures())
            figures.redemptions += row.redemptions
            figures.revenue += revenue
            figures.discount += discount
            figures.duplicate_uses += row.duplicate_uses
    offers.warnings.extend(
        f"coupon redemptions in {code} (discounts {amount(total)}) have no rate and are left out (hint: add "
        f"'{code}: <value in {money.currency}>' under rates: in rules/currency.yaml)"
        for code, total in sorted(left_out.items()))
    return offers

"""Money in the report: the reporting currency, the rates into it, and how
amounts are written (exact decimals, two places).

The reporting currency is the setting ``report_currency`` (CLI → environment
``OUTREACH_REPORT_CURRENCY`` → outreach.toml), else ``currency:`` of
rules/currency.yaml, else CNY. The rates of that file are quoted in its
``currency:``; when the reporting currency is another one, they are divided
by its rate (it must have one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from outreach.errors import ConfigError
from outreach.rules.currency import load_currency
from outreach.rules.loader import CURRENCY_FILE

#: Without configuration, amounts are in yuan (most of our users' shops).
DEFAULT_CURRENCY = "CNY"
CENT = Decimal("0.01")
#: Rates are kept to this many places after a change of base currency.
RATE_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Money:
    """The reporting currency and, per currency, the value of one unit in it (itself: 1)."""

    currency: str = DEFAULT_CURRENCY
    rates: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rates.setdefault(self.currency, Decimal(1))

    def convert(self, amount: Decimal, currency: str) -> Decimal | None:
        """``amount`` of ``currency`` in the reporting currency; None without a rate."""
        rate = self.rates.get(currency)
        return None if rate is None else amount * rate


def resolve_money(rules_dir: Path, report_currency: str | None) -> Money:
    """The reporting currency and rates from the setting and rules/currency.yaml."""
    file = load_currency(rules_dir if rules_dir.is_dir() else rules_dir.parent)
    if file is None:
        return Money(currency=report_currency or DEFAULT_CURRENCY)
    table = {file.currency: Decimal(1), **file.rates}
    target = report_currency or file.currency
    if target not in table:
        raise ConfigError(
            f"{rules_dir / CURRENCY_FILE}: the reporting currency {target} (setting report_currency) has no rate "
            f"(hint: add '{target}: <value of 1 {target} in {file.currency}>' under rates:, or set "
            f"currency: {target} and quote the rates in it)")
    base = table[target]
    if base == 1:
        return Money(currency=target, rates=table)
    return Money(currency=target, rates={code: (rate / base).quantize(RATE_PLACES) if code != target else Decimal(1)
                                         for code, rate in table.items()})


def rate_text(rate: Decimal) -> str:
    """A rate as the document writes it: "1" for the reporting currency, else at least two places ("7.10")."""
    if rate == 1:
        return "1"
    plain = rate.normalize()
    return str(plain if -plain.as_tuple().exponent >= 2 else plain.quantize(CENT))  # type: ignore[operator]


def amount(value: Decimal) -> str:
    """An amount as the document writes it: exact, two places ("41234.00")."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))

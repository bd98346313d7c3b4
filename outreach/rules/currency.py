"""rules/currency.yaml: the reporting currency and the rates the ROI report
converts order amounts with.

    # rules/currency.yaml
    currency: CNY          # the currency the rates are quoted in
    rates:                 # one unit of each currency, in CNY
      USD: 7.10
      EUR: 7.70

An order in a currency with no rate here is never summed under another
currency: the report leaves it out and lists it (``unconverted``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from outreach.rules.loader import CURRENCY_FILE, parse_file
from outreach.rules.model import Strict

CODE = re.compile(r"^[A-Z]{3}$")


def check_code(value: str) -> str:
    if not CODE.match(value):
        raise ValueError(f"'{value}' is not a currency code like CNY or USD (three capital letters, ISO 4217)")
    return value


class CurrencyFile(Strict):
    """rules/currency.yaml: ``currency`` the rates are quoted in, ``rates`` one unit of each other currency."""

    currency: str = "CNY"
    rates: dict[Annotated[str, AfterValidator(check_code)], Annotated[Decimal, Field(gt=0)]] = Field(
        default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str) -> str:
        return check_code(value)


def load_currency(folder: Path) -> CurrencyFile | None:
    """rules/currency.yaml, or None without one."""
    file = folder / CURRENCY_FILE
    if not file.is_file():
        return None
    return parse_file(file, model=CurrencyFile,
                      what="currency.yaml must be a mapping (currency: CNY, rates: {USD: 7.10})")

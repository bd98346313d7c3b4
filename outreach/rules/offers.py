"""Offers: a personal coupon code in every message of a rule (``offer:``).

    offer:
      pool: spring15        # codes from `outreach coupons generate|import spring15`
      discount: 15%         # or an amount with its currency: 20 CNY
      valid_days: 14        # the code is good for 14 days after the message is sent …
      expires: 2026-04-30   # … and never after this day (either, both or neither)

Each message gets a code of its own from the pool when it is sent (never a
held-out customer, never twice); ``{{ offer.code }}``, ``{{ offer.discount }}``
and ``{{ offer.expires }}`` show it. An order that carries the code is
attributed to that message exactly. Several rules may share a pool when they
state the same discount (the shop's codes carry one).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, field_validator

from outreach.rules.model import Strict

#: A pool's name: like a rule's (lower-case letters, digits, - and _).
POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d{1,2})?)\s*([A-Za-z]{3})\s*$")
#: The largest amount off an order can have (orders hold 12 digits before the point).
MAX_AMOUNT_OFF = Decimal("999999999999.99")
DISCOUNT_HINT = "use 15% (a percentage off) or 20 CNY (an amount off, with its 3-letter currency)"


def plain_number(value: Decimal) -> str:
    """15 for 15.00, 12.5 for 12.50 (no exponent, no trailing zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(value: Decimal) -> str:
    """20 for 20.00, 19.90 for 19.9: whole amounts bare, others in cents."""
    return plain_number(value) if value == value.to_integral_value() else f"{value:.2f}"


def parse_discount(raw: object) -> tuple[Decimal | None, Decimal | None, str | None]:
    """(percent off, amount off, currency) of ``15%`` or ``20 CNY``; ValueError otherwise."""
    text = str(raw) if isinstance(raw, str | int | float | Decimal) and not isinstance(raw, bool) else ""
    if percent := _PERCENT.match(text):
        value = Decimal(percent.group(1))
        if not 0 < value < 100:
            raise ValueError(f"a percentage off must be more than 0% and less than 100%, not {text.strip()}; "
                             "use an amount (e.g. 20 CNY) for a free gift")
        return value, None, None
    if amount := _AMOUNT.match(text):
        value = Decimal(amount.group(1))
        if not 0 < value <= MAX_AMOUNT_OFF:
            raise ValueError(f"an amount off must be more than 0, not {text.strip()}; {DISCOUNT_HINT}")
        return None, value, amount.group(2).upper()
    raise ValueError(f"{raw!r} is not a discount; {DISCOUNT_HINT}")


class Offer(Strict):
    """A personal coupon code per message, from a pool of codes, and what it gives."""

    #: The pool the codes come from (``outreach coupons generate|import POOL``).
    pool: str
    #: What the code gives: ``15%`` off, or an amount off such as ``20 CNY``.
    discount: str
    #: The code is good for this many days after the message is sent.
    valid_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    #: … and never after this day (a campaign's last day), e.g. 2026-04-30.
    expires: date | None = None

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not POOL_NAME.match(value):
            raise ValueError(f"'{value}' is not a pool name; use lower-case letters, digits, '-' and '_' "
                             "(e.g. spring15)")
        return value

    @field_validator("discount", mode="before")
    @classmethod
    def _discount(cls, value: Any) -> str:
        percent, amount, currency = parse_discount(value)
        if percent is not None:
            return f"{plain_number(percent)}%"
        assert amount is not None
        return f"{money(amount)} {currency}"

    @property
    def percent(self) -> Decimal | None:
        return parse_discount(self.discount)[0]

    @property
    def amount(self) -> Decimal | None:
        return parse_discount(self.discount)[1]

    @property
    def currency(self) -> str | None:
        return parse_discount(self.discount)[2]

    def expires_on(self, given: datetime) -> date | None:
        """The last day a code given at ``given`` (naive UTC) is good for, by
        the offer's terms alone (the code's own expiry may be earlier)."""
        days = given.date() + timedelta(days=self.valid_days) if self.valid_days else None
        ends = [d for d in (days, self.expires) if d is not None]
        return min(ends) if ends else None

    def ended(self, now: datetime) -> bool:
        """The offer's last day (``expires``) is over as of ``now``."""
        return self.expires is not None and self.expires < now.date()

    def context(self, code: str, expires_on: date | None) -> dict[str, Any]:
        """What templates see as ``offer``."""
        return {"code": code, "discount": self.discount, "percent": self.percent, "amount": self.amount,
                "currency": self.currency, "expires": expires_on, "pool": self.pool}

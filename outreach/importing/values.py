"""Cell parsers: one string in, one clean value out, or an ``InvalidValue``.

Each parser is pure (no database, no file) so the importer, the webhooks and
the tests share the same idea of what a phone number or an amount looks like.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.clock import to_naive_utc

#: E.164: a plus, a country code that does not start with 0, at most 15 digits
#: in all; 7 digits is the shortest number any numbering plan hands out.
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
#: Characters people put into phone numbers for readability.
PHONE_PUNCTUATION = re.compile(r"[\s\-()]")
PHONE_HINT = "write phone numbers in international form, e.g. +8613812345678"
#: A sanity check, not RFC 5322: something@something.tld, no spaces.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
EMAIL_HINT = "write one address per cell, like li.wei@example.com"
#: The longest address SMTP can carry (RFC 5321 path limit).
EMAIL_MAX = 254
#: Locale tags as the renderer picks templates by them: en, zh_CN, pt_BR.
LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[_-]([A-Za-z]{2}|\d{3}))?$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_HINT = "write times in ISO 8601, like 2026-03-01T09:30:00+08:00 or 2026-03-01"
#: Numeric(14, 2) in the schema: 12 digits before the point, 2 after.
MAX_AMOUNT = Decimal("999999999999.99")
CENT = Decimal("0.01")
AMOUNT_HINT = "write amounts like 1234.50: a point for decimals, no currency sign or thousands separator"
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
LINE_BREAKS = re.compile(r"[\r\n\t]+")


class InvalidValue(ValueError):
    """A cell (or webhook field) holds a value we cannot use.

    ``message`` says what is wrong, ``hint`` how to fix it; ``str()`` gives
    both, so code that only knows ``ValueError`` still shows the hint.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


def normalize_phone(raw: str) -> str:
    """``"0086 138-1234 5678"`` -> ``"+8613812345678"`` (E.164), else ``InvalidValue``.

    Full-width digits and plus signs (common in Chinese input methods) are
    folded to ASCII first; spaces, dashes and parentheses are dropped; a
    leading international ``00`` becomes ``+``.
    """
    text = PHONE_PUNCTUATION.sub("", unicodedata.normalize("NFKC", raw))
    if text.startswith("00"):
        text = "+" + text[2:]
    if not E164.match(text):
        raise InvalidValue(f"'{raw.strip()}' is not a phone number in international form", hint=PHONE_HINT)
    return text


def normalize_email(raw: str) -> str:
    """Trim and lowercase an address; ``InvalidValue`` if it cannot be one."""
    text = raw.strip().lower()
    if len(text) > EMAIL_MAX or not EMAIL.match(text):
        raise InvalidValue(f"'{raw.strip()}' is not an email address", hint=EMAIL_HINT)
    return text


@lru_cache(maxsize=1024)
def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_timezone(raw: str) -> str:
    if not _zone_exists(raw):
        raise InvalidValue(
            f"'{raw}' is not a known time zone",
            hint="use an IANA name like Asia/Shanghai, Europe/Berlin or UTC",
        )
    return raw


def parse_locale(raw: str) -> str:
    """``zh-cn`` -> ``zh_CN``; the form template file names use."""
    match = LOCALE.match(raw)
    if not match:
        raise InvalidValue(f"'{raw}' is not a locale", hint="use a language code like en or zh_CN")
    language, region = match.groups()
    return language.lower() + (f"_{region.upper()}" if region else "")


def parse_choice(raw: str, choices: tuple[str, ...]) -> str:
    value = raw.lower()
    if value not in choices:
        raise InvalidValue(f"'{raw}' is not one of {', '.join(choices)}", hint=f"use one of {', '.join(choices)}")
    return value


def parse_date(raw: str) -> date:
    try:
        if not ISO_DATE.match(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidValue(f"'{raw}' is not a date", hint="write dates as YYYY-MM-DD, e.g. 1990-05-17") from None


def parse_instant(raw: str) -> datetime:
    """An ISO 8601 time as naive UTC; a time without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"'{raw}' is not an ISO 8601 time", hint=TIME_HINT) from None
    return to_naive_utc(value)


def parse_amount(raw: str) -> Decimal:
    """A non-negative money amount with at most two decimals."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidValue(f"'{raw}' is not an amount", hint=AMOUNT_HINT) from None
    if not value.is_finite():
        raise InvalidValue(f"'{raw}' is not an amount", hint=AMOUNT_HINT)
    if value < 0:
        raise InvalidValue(
            f"amount {raw} is negative", hint="record refunds in your shop system, not as negative orders"
        )
    if value > MAX_AMOUNT:
        raise InvalidValue(f"amount {raw} is too large", hint=f"amounts must be at most {MAX_AMOUNT}")
    cents = value.quantize(CENT)
    if cents != value:
        raise InvalidValue(f"amount {raw} has more than two decimals", hint=AMOUNT_HINT)
    return cents


def parse_currency(raw: str) -> str:
    if not CURRENCY.match(raw):
        raise InvalidValue(
            f"'{raw}' is not a currency code", hint="use a 3-letter ISO 4217 code like CNY, USD or EUR"
        )
    return raw.upper()


def parse_quantity(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidValue(f"quantity '{raw}' is not a whole number", hint="write quantities like 2") from None
    if value < 1:
        raise InvalidValue(f"quantity {raw} is less than 1", hint="list only items that were bought")
    return value


def check_length(raw: str, limit: int) -> str:
    """The schema's column width, checked here so a long cell is a row error."""
    if len(raw) > limit:
        raise InvalidValue(f"'{raw[:20]}…' is {len(raw)} characters long", hint=f"keep it to {limit} characters")
    return raw


def parse_name(raw: str, limit: int) -> str:
    """A person's name: at most ``limit`` characters, on one line (a line
    break or tab inside a quoted cell becomes a space), and no other control
    character (U+000B or NUL in a name breaks the email's headers and
    greeting; a zero-width joiner or a direction mark is text and is kept)."""
    raw = " ".join(LINE_BREAKS.sub(" ", raw).split()) if LINE_BREAKS.search(raw) else raw
    for position, char in enumerate(raw, start=1):
        if unicodedata.category(char) == "Cc":
            raise InvalidValue(f"the name contains the control character U+{ord(char):04X} at position {position}",
                               hint="remove it (often a line break or a stray character pasted from another "
                                    "program)")
    return check_length(raw, limit)

"""Phone numbers and days as the Chinese SMS providers count them.

Customers' numbers are kept in E.164 (``+8613800000001``). Aliyun's SendSms
takes a mainland number as its 11 national digits and any other as country
code + number without the ``+`` (``85261234567``); its pushes report the
number the same way. Tencent Cloud takes E.164 and reports a ``nationcode``
and a ``mobile`` apart. Daily sending limits reset at midnight in China.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

#: Where the providers' days begin and end.
CHINA = ZoneInfo("Asia/Shanghai")
#: China's country calling code, and what a mainland mobile number looks like nationally.
MAINLAND = "86"
_MAINLAND_MOBILE = re.compile(r"^1\d{10}$")
_DIGITS = re.compile(r"^\d{5,15}$")


def aliyun_number(e164: str) -> str:
    """How Aliyun's ``PhoneNumbers`` takes an E.164 number."""
    digits = e164.removeprefix("+")
    if digits.startswith(MAINLAND) and _MAINLAND_MOBILE.match(digits[len(MAINLAND):]):
        return digits[len(MAINLAND):]
    return digits


def e164_of(number: str, *, nationcode: str | None = None) -> str | None:
    """A number as a provider reported it (``13800000001``, ``8613800000001``,
    ``+8613800000001``, ``008613800000001``; or ``mobile`` with its
    ``nationcode``) in E.164; None when it is not a phone number."""
    digits = re.sub(r"[\s-]", "", number)
    if nationcode:
        digits = nationcode.strip().lstrip("+") + digits.removeprefix("+")
    elif digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif _MAINLAND_MOBILE.match(digits):
        digits = MAINLAND + digits
    return f"+{digits}" if _DIGITS.match(digits) and not digits.startswith("0") else None


def seconds_to_midnight(now: datetime | None = None) -> float:
    """Seconds until the next day begins in China (when daily limits reset)."""
    here = (now or datetime.now(UTC)).astimezone(CHINA)
    tomorrow = (here + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - here).total_seconds()

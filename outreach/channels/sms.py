"""How many SMS segments a text costs, the way carriers and Twilio count them.

A text that uses only the GSM 03.38 alphabet is sent as GSM-7: 160 septets in
one SMS, 153 per part once it is split (the user-data header takes the rest).
Characters of the GSM extension table (``€ [ ] { } ^ ~ | \\`` and form feed)
take two septets. Any other character (Chinese, emoji, ``ç``…) switches the
whole text to UCS-2: 70 UTF-16 code units in one SMS, 67 per part; an emoji
outside the Basic Multilingual Plane is two code units.

A part never ends in the middle of a character: an extension character (two
septets) or a surrogate pair (two code units) that does not fit moves to the
next part, as on the handset and on the invoice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GSM7 = "GSM-7"
UCS2 = "UCS-2"

#: GSM 03.38 basic character set (0x1B, the escape to the extension table, left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: each costs an escape septet plus its own.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

#: GSM-7 septets in a single SMS, and per part of a concatenated one.
GSM7_SINGLE = 160
GSM7_PART = 153
#: UCS-2 code units in a single SMS, and per part of a concatenated one.
UCS2_SINGLE = 70
UCS2_PART = 67


#: E.164: "+", a country code not starting with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
E164_HINT = "write phone numbers as + country code + number, e.g. +8613800000001 or +14155552671"


def is_e164(number: str) -> bool:
    """Whether ``number`` is a phone number in E.164 form."""
    return bool(_E164.match(number))


def sms_encoding(text: str) -> str:
    """``"GSM-7"`` if every character is in the GSM alphabet, else ``"UCS-2"``."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return GSM7
    return UCS2


def _unit_costs(text: str, encoding: str) -> Iterable[int]:
    """Per character: septets (GSM-7) or UTF-16 code units (UCS-2)."""
    if encoding == GSM7:
        return (2 if ch in GSM7_EXTENSION else 1 for ch in text)
    return (2 if ord(ch) > 0xFFFF else 1 for ch in text)


def sms_segments(text: str) -> int:
    """Number of SMS a text is sent as; an empty text is still one SMS."""
    encoding = sms_encoding(text)
    costs = list(_unit_costs(text, encoding))
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding == GSM7 else (UCS2_SINGLE, UCS2_PART)
    if sum(costs) <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts, used = parts + 1, 0
        used += cost
    return parts

"""Signed tokens for the links in a message: unsubscribe, click, open,
survey answers, the preference page (and its forms), double opt-in confirmations.

itsdangerous signs the payload with the installation's secret and a salt per
purpose, so an unsubscribe token cannot be used as a click token; checks are
constant-time. A click token signs the URL itself, so the redirect endpoint
only ever sends people to links that were in the message.
"""

from __future__ import annotations

import binascii
import calendar
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from outreach.config import Settings
from outreach.errors import OutreachError

UNSUBSCRIBE_SALT = "outreach.unsubscribe"
CLICK_SALT = "outreach.click"
OPEN_SALT = "outreach.open"
SURVEY_SALT = "outreach.survey"
PREFERENCES_SALT = "outreach.preferences"
PREFERENCES_FORM_SALT = "outreach.preferences.form"
CONFIRM_SALT = "outreach.confirm"
#: How long a preference page's form may be sent after the page was shown.
FORM_MAX_AGE = timedelta(hours=24)


class BadToken(OutreachError):
    """A token was tampered with, truncated, or signed with another secret."""


def _serializer(settings: Settings, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(settings.require_secret(), salt=salt)


class _Writer:
    """Writes exactly the tokens ``URLSafeSerializer(secret, salt).dumps``
    writes — compact JSON, base64url, HMAC-SHA1 with itsdangerous's
    "django-concat" key — with the key derived once instead of for every
    token (four per email). Our payloads are too small for its zlib attempt
    to pay; reading goes through itsdangerous itself, which takes both forms."""

    def __init__(self, secret: str, salt: str) -> None:
        key = hashlib.sha1(salt.encode() + b"signer" + secret.encode()).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha1)

    def dumps(self, obj: Any) -> str:
        # An id is its own compact JSON (most tokens are one): no encoder needed.
        text = str(obj) if type(obj) is int else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        payload = _base64(text.encode("utf-8"))
        mac = self._mac.copy()
        mac.update(payload)
        return (payload + b"." + _base64(mac.digest())).decode("ascii")


#: base64 to its URL-safe alphabet.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _base64(data: bytes) -> bytes:
    """itsdangerous's ``base64_encode``: URL-safe base64 without padding."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


@lru_cache(maxsize=64)
def _writer(secret: str, salt: str) -> _Writer:
    return _Writer(secret, salt)


def _dumps(settings: Settings, salt: str, obj: Any) -> str:
    return _writer(settings.require_secret(), salt).dumps(obj)


def _base(settings: Settings) -> str:
    return settings.public_url.rstrip("/")


def _read(settings: Settings, salt: str, token: str) -> Any:
    try:
        return _serializer(settings, salt).loads(token)
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is incomplete)") from None


def unsubscribe_url(settings: Settings, message_id: int) -> str:
    return f"{_base(settings)}/u/{_dumps(settings, UNSUBSCRIBE_SALT, message_id)}"


def click_url(settings: Settings, message_id: int, url: str) -> str:
    return f"{_base(settings)}/c/{_dumps(settings, CLICK_SALT, [message_id, url])}"


def open_pixel_url(settings: Settings, message_id: int) -> str:
    return f"{_base(settings)}/o/{_dumps(settings, OPEN_SALT, message_id)}.gif"


def read_unsubscribe_token(settings: Settings, token: str) -> int:
    value = _read(settings, UNSUBSCRIBE_SALT, token)
    if not isinstance(value, int):
        raise BadToken("this link is not valid")
    return value


def read_click_token(settings: Settings, token: str) -> tuple[int, str]:
    value = _read(settings, CLICK_SALT, token)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], str)):
        raise BadToken("this link is not valid")
    return value[0], value[1]


def survey_url(settings: Settings, message_id: int, score: int) -> str:
    return f"{_base(settings)}/s/{_dumps(settings, SURVEY_SALT, [message_id, score])}"


def read_survey_token(settings: Settings, token: str) -> tuple[int, int]:
    value = _read(settings, SURVEY_SALT, token)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise BadToken("this link is not valid")
    return value[0], value[1]


def read_open_token(settings: Settings, token: str) -> int:
    value = _read(settings, OPEN_SALT, token.removesuffix(".gif"))
    if not isinstance(value, int):
        raise BadToken("this link is not valid")
    return value


def preferences_url(settings: Settings, message_id: int) -> str:
    """The customer's preference page, reached from one of their messages."""
    return f"{_base(settings)}/p/{_dumps(settings, PREFERENCES_SALT, message_id)}"


def read_preferences_token(settings: Settings, token: str) -> int:
    value = _read(settings, PREFERENCES_SALT, token)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken("this link is not valid")
    return value


def _epoch(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())  # naive UTC, not the machine's zone


def form_nonce(settings: Settings, message_id: int, *, now: datetime) -> str:
    """A per-form signed nonce: which preference page (message) it was shown
    for, when, and 8 random bytes. The page's POST must carry one for the
    same page, at most ``FORM_MAX_AGE`` old."""
    return _dumps(settings, PREFERENCES_FORM_SALT, [message_id, _epoch(now), secrets.token_hex(8)])


def check_form_nonce(settings: Settings, nonce: str, *, message_id: int, now: datetime) -> None:
    """BadToken unless ``nonce`` was made for this page within ``FORM_MAX_AGE``."""
    value = _read(settings, PREFERENCES_FORM_SALT, nonce)
    if not (isinstance(value, list) and len(value) == 3 and value[0] == message_id and isinstance(value[1], int)):
        raise BadToken("this form is not for this page")
    if not 0 <= _epoch(now) - value[1] <= FORM_MAX_AGE.total_seconds():
        raise BadToken("this form is out of date")


def confirm_url(settings: Settings, request_id: int) -> str:
    """The link of a double opt-in confirmation email (its expiry and single
    use are the request's, in the database)."""
    return f"{_base(settings)}/r/{_dumps(settings, CONFIRM_SALT, request_id)}"


def read_confirm_token(settings: Settings, token: str) -> int:
    value = _read(settings, CONFIRM_SALT, token)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken("this link is not valid")
    return value

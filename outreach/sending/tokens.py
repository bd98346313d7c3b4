"""Signed tokens for the links in a message: unsubscribe, click, open.

itsdangerous signs the payload with the installation's secret and a salt per
purpose, so an unsubscribe token cannot be used as a click token; checks are
constant-time. A click token signs the URL itself, so the redirect endpoint
only ever sends people to links that were in the message.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from outreach.config import Settings
from outreach.errors import OutreachError

UNSUBSCRIBE_SALT = "outreach.unsubscribe"
CLICK_SALT = "outreach.click"
OPEN_SALT = "outreach.open"


class BadToken(OutreachError):
    """A token was tampered with, truncated, or signed with another secret."""


def _serializer(settings: Settings, salt: str) -> URLSafeSerializer:
    return _signer(settings.require_secret(), salt)


@lru_cache(maxsize=64)
def _signer(secret: str, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=salt)


def _base(settings: Settings) -> str:
    return settings.public_url.rstrip("/")


def _read(settings: Settings, salt: str, token: str) -> Any:
    try:
        return _serializer(settings, salt).loads(token)
    except BadSignature:
        raise BadToken("this link is not valid (it was changed or is incomplete)") from None


def unsubscribe_url(settings: Settings, message_id: int) -> str:
    return f"{_base(settings)}/u/{_serializer(settings, UNSUBSCRIBE_SALT).dumps(message_id)}"


def click_url(settings: Settings, message_id: int, url: str) -> str:
    return f"{_base(settings)}/c/{_serializer(settings, CLICK_SALT).dumps([message_id, url])}"


def open_pixel_url(settings: Settings, message_id: int) -> str:
    return f"{_base(settings)}/o/{_serializer(settings, OPEN_SALT).dumps(message_id)}.gif"


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


def read_open_token(settings: Settings, token: str) -> int:
    value = _read(settings, OPEN_SALT, token.removesuffix(".gif"))
    if not isinstance(value, int):
        raise BadToken("this link is not valid")
    return value

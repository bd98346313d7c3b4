"""Time at the edges: parse ``--now``, convert to the naive UTC we store."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.errors import InputError


def utcnow() -> datetime:
    """The wall clock, as naive UTC. Only the CLI's default for ``--now`` and
    the webhook server (which records when a response arrived) call this."""
    return datetime.now(UTC).replace(tzinfo=None)


@lru_cache(maxsize=1024)
def known_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name, or None when Python does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_or_utc(name: str) -> ZoneInfo:
    """A customer's time zone; a name nobody knows reads as UTC, everywhere."""
    return known_zone(name) or ZoneInfo("UTC")


def to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_instant(text: str, *, field: str = "--now") -> datetime:
    """Parse an ISO 8601 instant; a value without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError.single(
            f"'{text}' is not an ISO 8601 time",
            field=field,
            hint="write it like 2026-03-01T09:00:00+08:00 or 2026-03-01",
        ) from None
    return to_naive_utc(value)

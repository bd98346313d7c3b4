"""``redis://``, ``rediss://``, ``unix://``: Dramatiq's RedisBroker.

Messages wait in Redis (under ``broker_namespace``, so several installations
share one server) until ``outreach worker`` processes, on any number of
machines, take them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dramatiq.brokers.redis import RedisBroker

if TYPE_CHECKING:
    from outreach.config import Settings

IN_PROCESS = False


def make(settings: Settings) -> RedisBroker:
    broker: RedisBroker = RedisBroker(  # type: ignore[no-untyped-call]  # its __init__ has no annotations
        url=settings.broker_url, namespace=settings.broker_namespace
    )
    return broker


def drain(broker: RedisBroker, *, queue: str, threads: int) -> None:
    """Nothing to do here: separate worker processes deliver."""

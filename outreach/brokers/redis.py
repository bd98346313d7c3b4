"""``redis://``, ``rediss://``, ``unix://``: Dramatiq's RedisBroker.

Messages wait in Redis (under ``broker_namespace``, so several installations
share one server) until ``outreach worker`` processes, on any number of
machines, take them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dramatiq.brokers.redis import RedisBroker
from redis.exceptions import RedisError

from outreach.config import masked_url
from outreach.errors import ServiceError

if TYPE_CHECKING:
    from outreach.config import Settings

IN_PROCESS = False


def make(settings: Settings) -> RedisBroker:
    return RedisBroker(url=settings.broker_url, namespace=settings.broker_namespace)


def check(broker: RedisBroker, settings: Settings) -> None:
    """Fail now, with the setting to look at, when Redis cannot be reached
    (rather than after a campaign was planned)."""
    try:
        broker.client.ping()
    except RedisError as exc:
        raise ServiceError(
            f"cannot reach the broker {masked_url(settings.broker_url)}: {exc} "
            "(hint: is Redis running and reachable? check OUTREACH_BROKER_URL)"
        ) from None


def pending(broker: RedisBroker, *, queues: Sequence[str]) -> int:
    """Waiting, delayed and unacknowledged messages of ``queues`` in Redis."""
    return sum(int(broker.do_qsize(queue)) for queue in queues)


def drain(broker: RedisBroker, *, queues: Sequence[str], threads: int) -> None:
    """Nothing to do here: separate worker processes deliver."""

"""``redis://``, ``rediss://``, ``unix://``: Dramatiq's RedisBroker.

Messages wait in Redis (under ``broker_namespace``, so several installations
share one server) until ``outreach worker`` processes, on any number of
machines, take them.

A consumer's unacknowledged messages go back to their queue once it has
been silent for ``worker_dead_after`` (Dramatiq's heartbeat timeout, set to
ours): Dramatiq looks for such consumers by chance, one command in a
thousand; each worker's janitor looks every round (:func:`requeue_abandoned`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from redis.exceptions import RedisError

from outreach.config import masked_url
from outreach.errors import ServiceError

if TYPE_CHECKING:
    from outreach.config import Settings

IN_PROCESS = False
#: Per broker: a twin on the same connection that does Dramatiq's maintenance on every command.
_MAINTAINERS: weakref.WeakKeyDictionary[RedisBroker, RedisBroker] = weakref.WeakKeyDictionary()


def make(settings: Settings) -> RedisBroker:
    return RedisBroker(url=settings.broker_url, namespace=settings.broker_namespace,
                       heartbeat_timeout=int(settings.worker_dead_after * 1000))


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


def beat(broker: RedisBroker, *, queues: Sequence[str]) -> None:
    """Tell Redis this process's consumers are alive (every Dramatiq command
    does; a consumer whose threads are all busy sends none for a while)."""
    broker.do_qsize(queues[0])


def requeue_abandoned(broker: RedisBroker, *, queues: Sequence[str]) -> None:
    """Messages taken by consumers silent longer than the heartbeat timeout
    (a worker killed, its machine gone) and never acknowledged: back on their queues now."""
    twin = _MAINTAINERS.get(broker)
    if twin is None:
        twin = _MAINTAINERS[broker] = RedisBroker(
            client=broker.client, namespace=broker.namespace, heartbeat_timeout=broker.heartbeat_timeout,
            maintenance_chance=MAINTENANCE_SCALE, middleware=[])
    for queue in queues:
        twin.do_qsize(queue)


def drain(broker: RedisBroker, *, queues: Sequence[str], threads: int) -> None:
    """Nothing to do here: separate worker processes deliver."""

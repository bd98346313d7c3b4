"""``memory://``: Dramatiq's in-process StubBroker, worked by threads of the
command that enqueued (``campaign launch`` and ``run`` deliver before they return)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name

if TYPE_CHECKING:
    from outreach.config import Settings

IN_PROCESS = True
#: How long (ms) a worker thread waits for a message before checking for shutdown.
WORKER_TIMEOUT_MS = 100


def make(settings: Settings) -> StubBroker:
    return StubBroker()


def check(broker: StubBroker, settings: Settings) -> None:
    """Nothing to reach: the broker lives in this process."""


def pending(broker: StubBroker, *, queues: Sequence[str]) -> int:
    return sum(broker.queues[q].qsize() + broker.queues[dq_name(q)].qsize() for q in queues if q in broker.queues)


def beat(broker: StubBroker, *, queues: Sequence[str]) -> None:
    """Nothing to tell: the consumers live in this process."""


def requeue_abandoned(broker: StubBroker, *, queues: Sequence[str]) -> None:
    """Nothing can be abandoned: a consumer dies with the process that holds the queue."""


def drain(broker: StubBroker, *, queues: Sequence[str], threads: int) -> None:
    """Run a worker in this process until the queues are empty."""
    worker = Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
    worker.start()
    try:
        for queue in queues:
            if queue in broker.queues:
                broker.join(queue, fail_fast=False)
        worker.join()
    finally:
        worker.stop()

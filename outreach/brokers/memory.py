"""``memory://``: Dramatiq's in-process StubBroker, worked by threads of the
command that enqueued (``campaign launch`` and ``run`` deliver before they return)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

if TYPE_CHECKING:
    from outreach.config import Settings

IN_PROCESS = True
#: How long (ms) a worker thread waits for a message before checking for shutdown.
WORKER_TIMEOUT_MS = 100


def make(settings: Settings) -> StubBroker:
    return StubBroker()


def check(broker: StubBroker, settings: Settings) -> None:
    """Nothing to reach: the broker lives in this process."""


def drain(broker: StubBroker, *, queue: str, threads: int) -> None:
    """Run a worker in this process until the queue is empty."""
    worker = Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
    worker.start()
    try:
        broker.join(queue, fail_fast=False)
        worker.join()
    finally:
        worker.stop()

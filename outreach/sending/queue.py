"""Dramatiq wiring: one broker per process, the ``deliver`` actor, and an
in-process worker for the embedded default.

``memory://`` → Dramatiq's StubBroker with a Worker in this process;
``redis://…`` → RedisBroker, consumed by ``outreach worker`` processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine

from outreach.config import Settings
from outreach.store.engine import engine_for

log = logging.getLogger("outreach.tasks")

QUEUE = "outreach-send"
#: Retry backoff bounds for a retryable channel error (milliseconds).
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 60_000
#: A single delivery may not run longer than this (well under the claim lease).
TIME_LIMIT_MS = 5 * 60_000


@dataclass
class _Context:
    settings: Settings
    engine: Engine
    broker: dramatiq.Broker
    actor: Any


_context: _Context | None = None


def _deliver(message_id: int, as_of: str | None = None) -> None:
    from outreach.sending.deliver import deliver_message

    assert _context is not None, "outreach.tasks.setup() was not called"
    outcome = deliver_message(
        message_id,
        settings=_context.settings,
        engine=_context.engine,
        as_of=datetime.fromisoformat(as_of) if as_of else None,
    )
    log.info("message %s: %s %s", outcome.message_id, outcome.status, outcome.detail)


def make_broker(settings: Settings) -> dramatiq.Broker:
    if settings.in_process_broker:
        return StubBroker()
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=settings.broker_url, namespace=settings.broker_namespace)
    from outreach.errors import ConfigError

    raise ConfigError(
        f"OUTREACH_BROKER_URL '{settings.broker_url}' is not supported: use memory:// "
        "(embedded) or redis://host:6379/0"
    )


def setup(settings: Settings, engine: Engine | None = None) -> _Context:
    """Create this process's broker and declare the actor on it."""
    global _context
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    actor = dramatiq.actor(
        _deliver,
        actor_name="outreach_deliver",
        queue_name=QUEUE,
        broker=broker,
        max_retries=20,
        min_backoff=MIN_BACKOFF_MS,
        max_backoff=MAX_BACKOFF_MS,
        time_limit=TIME_LIMIT_MS,
    )
    _context = _Context(settings, engine or engine_for(settings.database_url), broker, actor)
    return _context


def enqueue(ctx: _Context, message_ids: list[int], *, as_of: datetime | None) -> None:
    stamp = as_of.isoformat() if as_of else None
    for message_id in message_ids:
        ctx.actor.send(message_id, stamp)


def drain(ctx: _Context, *, threads: int | None = None) -> None:
    """Embedded mode: run an in-process worker until the queue is empty."""
    if not isinstance(ctx.broker, StubBroker):
        return
    worker = Worker(ctx.broker, worker_threads=threads or ctx.settings.worker_threads, worker_timeout=100)
    worker.start()
    try:
        ctx.broker.join(QUEUE, fail_fast=False)
        worker.join()
    finally:
        worker.stop()

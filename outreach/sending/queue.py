"""Dramatiq wiring: one broker per process (``outreach.brokers``, by URL
scheme), the ``deliver`` actor on it, enqueueing, and — embedded — delivering
in this process before returning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import Engine

from outreach import brokers
from outreach.config import Settings
from outreach.sending.deliver import deliver_message
from outreach.store.engine import engine_for

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
    assert _context is not None, "outreach.sending.queue.setup() was not called"
    deliver_message(
        message_id,
        settings=_context.settings,
        engine=_context.engine,
        as_of=datetime.fromisoformat(as_of) if as_of else None,
    )


def setup(settings: Settings, engine: Engine | None = None) -> _Context:
    """Create this process's broker and declare the actor on it."""
    global _context
    broker = brokers.make_broker(settings)
    dramatiq.set_broker(broker)
    actor = dramatiq.actor(
        actor_name="outreach_deliver",
        queue_name=QUEUE,
        broker=broker,
        max_retries=20,
        min_backoff=MIN_BACKOFF_MS,
        max_backoff=MAX_BACKOFF_MS,
        time_limit=TIME_LIMIT_MS,
    )(_deliver)
    _context = _Context(settings, engine or engine_for(settings.database_url), broker, actor)
    return _context


def enqueue(ctx: _Context, message_ids: list[int], *, as_of: datetime | None) -> None:
    stamp = as_of.isoformat() if as_of else None
    for message_id in message_ids:
        ctx.actor.send(message_id, stamp)


def drain(ctx: _Context, *, threads: int | None = None) -> None:
    """Embedded (``memory://``): deliver everything queued before returning."""
    brokers.drain(ctx.settings, ctx.broker, queue=QUEUE, threads=threads or ctx.settings.worker_threads)

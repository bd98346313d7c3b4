"""Dramatiq wiring: one broker per process (``outreach.brokers``, by URL
scheme), the batch actors on it, enqueueing in batches, and — embedded —
delivering in this process before returning.

Two queues: ``outreach-transactional`` (rules with ``transactional: true``,
an order confirmation) is worked ahead of ``outreach-send`` (marketing), so
a blast never delays it. A broker message is a batch of outbox ids; the
outbox, not the broker, counts attempts and schedules retries (the actors
never retry), so a batch handed over twice costs one empty claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach import brokers, logs
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.sending.deliver import Sender, Tally
from outreach.store import workers
from outreach.store.engine import engine_for, transaction
from outreach.store.models import Rule

log = logs.get_logger("outreach.sending")

QUEUE = "outreach-send"
TRANSACTIONAL_QUEUE = "outreach-transactional"
QUEUES = (TRANSACTIONAL_QUEUE, QUEUE)
#: Dramatiq works lower numbers first.
PRIORITY = {TRANSACTIONAL_QUEUE: 0, QUEUE: 10}
#: A batch takes well under a minute; this only stops a hung one for good.
TIME_LIMIT_MS = 60 * 60_000
#: How often an embedded drain reports progress (seconds).
PROGRESS_S = 0.5


@dataclass
class Context:
    """This process's broker, actors and sender."""

    settings: Settings
    engine: Engine
    broker: dramatiq.Broker
    actors: dict[str, Any]
    sender: Sender
    worker_id: str
    done: Tally = field(default_factory=Tally)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def in_process(self) -> bool:
        return brokers.in_process(self.settings.broker_url)


_context: Context | None = None


def _deliver_batch(ids: list[int], as_of: str | None = None) -> None:
    assert _context is not None, "outreach.sending.queue.setup() was not called"
    ctx = _context
    tally = ctx.sender.deliver(ids, as_of=datetime.fromisoformat(as_of) if as_of else None)
    with ctx.lock:
        ctx.done.add(tally)
    if tally.claimed:
        log.info("batch delivered", claimed=tally.claimed, sent=tally.sent, skipped=tally.skipped,
                 failed=tally.failed, retried=tally.retried)


def setup(settings: Settings, engine: Engine | None = None, *, worker_id: str | None = None) -> Context:
    """Create this process's broker (checked to be reachable) and declare the actors on it."""
    global _context
    broker = brokers.make_broker(settings)
    dramatiq.set_broker(broker)
    actors = {
        queue: dramatiq.actor(
            actor_name=f"outreach_deliver_{queue.replace('-', '_')}", queue_name=queue, broker=broker,
            priority=PRIORITY[queue], max_retries=0, time_limit=TIME_LIMIT_MS,
        )(_deliver_batch)
        for queue in QUEUES
    }
    engine = engine or engine_for(settings.database_url)
    worker_id = worker_id or workers.new_worker_id()
    sender = Sender(settings, engine, worker_id=worker_id, broker=broker)
    _context = Context(settings, engine, broker, actors, sender, worker_id)
    return _context


def _transactional_rules(engine: Engine) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(Rule.id).where(Rule.transactional.is_(True))))


def enqueue(ctx: Context, messages: Iterable[tuple[int, int]] | Sequence[int], *, as_of: datetime | None) -> int:
    """Hand (message id, rule id) pairs — or bare ids, marketing — to the
    broker in batches of ``batch_size``; returns the batches sent."""
    pairs = [(m, 0) if isinstance(m, int) else m for m in messages]
    if not pairs:
        return 0
    urgent = _transactional_rules(ctx.engine) if any(rule for _, rule in pairs) else set()
    by_queue: dict[str, list[int]] = {TRANSACTIONAL_QUEUE: [], QUEUE: []}
    for message_id, rule_id in pairs:
        by_queue[TRANSACTIONAL_QUEUE if rule_id in urgent else QUEUE].append(message_id)
    stamp = as_of.isoformat() if as_of else None
    size = ctx.settings.batch_size
    batches = 0
    for queue, ids in by_queue.items():
        ids.sort()
        for start in range(0, len(ids), size):
            ctx.actors[queue].send(ids[start:start + size], stamp)
            batches += 1
    return batches


def drain(ctx: Context, *, threads: int | None = None,
          progress: Callable[[Tally, int | None], None] | None = None, total: int | None = None) -> Tally:
    """Embedded (``memory://``): deliver everything queued before returning,
    as a registered worker that beats while it works. Returns what it did."""
    if not ctx.in_process:
        return Tally()
    with transaction(ctx.engine) as session:
        workers.beat(session, ctx.worker_id, now=utcnow())
    stop = threading.Event()

    def heartbeat() -> None:
        last = time.monotonic()
        while not stop.wait(PROGRESS_S if progress else ctx.settings.worker_heartbeat):
            if progress:
                with ctx.lock:
                    progress(ctx.done, total)
            if time.monotonic() - last >= ctx.settings.worker_heartbeat:
                last = time.monotonic()
                with transaction(ctx.engine) as session:
                    workers.beat(session, ctx.worker_id, now=utcnow())

    beating = threading.Thread(target=heartbeat, name="outreach-heartbeat", daemon=True)
    beating.start()
    try:
        brokers.drain(ctx.settings, ctx.broker, queues=QUEUES, threads=threads or ctx.settings.worker_threads)
    finally:
        stop.set()
        beating.join()
        with transaction(ctx.engine) as session:
            workers.retire(session, ctx.worker_id)
        if progress:
            progress(ctx.done, total)
    return ctx.done

"""Keeping the queue whole: what no message may be left without.

One round of :func:`maintain` (each worker process runs one every
``maintenance_interval`` seconds; ``outreach run``, ``campaign launch`` and
the scheduler run one too):

1. messages held by a worker whose heartbeat stopped go back to the queue
   (within ``worker_dead_after`` seconds of its death, not minutes later),
   and so do the broker messages its consumers had taken but not acknowledged;
2. deferred messages whose send window opened, and retried ones whose wait
   is over, are queued;
3. when the broker holds nothing although messages are ``queued`` (Redis
   restarted empty; an embedded run killed mid-drain), they are handed over
   again.

Everything is compare-and-set and re-enqueueing is harmless — a batch a
worker cannot claim costs one empty statement — so any number of janitors
may run at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from outreach import brokers, logs, metrics
from outreach.clock import utcnow
from outreach.sending import queue
from outreach.store import optouts, outbox, workers
from outreach.store.engine import transaction

log = logs.get_logger("outreach.janitor")

@dataclass(frozen=True)
class Round:
    recovered: int
    due: int
    lost: int


def maintain(ctx: queue.Context, *, due_by: datetime | None = None, as_of: datetime | None = None) -> Round:
    """One round. ``due_by`` is the moment deferred messages are due by (a
    simulated ``--now``; default the wall clock); ``as_of`` is passed on as
    the simulated send time of what this round queues."""
    wall = utcnow()
    optouts.drain(ctx.engine)  # opt-outs a busy embedded database could not take at once
    lost: list[outbox.Queued] = []
    brokers.requeue_abandoned(ctx.settings, ctx.broker, queues=queue.QUEUES)
    if brokers.pending(ctx.settings, ctx.broker, queues=queue.QUEUES) == 0:
        # A queued message younger than this may still be on its way to the broker.
        grace = timedelta(0) if ctx.in_process else timedelta(seconds=ctx.settings.broker_lost_after)
        with transaction(ctx.engine) as session:
            lost = outbox.waiting(session, queued_before=wall - grace)
    with transaction(ctx.engine) as session:
        recovered = workers.recover(session, now=wall, dead_after=timedelta(seconds=ctx.settings.worker_dead_after))
    with transaction(ctx.engine) as session:
        due = outbox.due(session, now=due_by or wall, queued_at=wall)
    if recovered:
        metrics.RECOVERED.inc(len(recovered))
        log.warning("messages taken back from a stopped worker; each may have been delivered once already",
                    count=len(recovered), message_ids=[m for m, _ in recovered][:50])
    if lost:
        log.warning("queued messages the broker no longer holds, handed over again", count=len(lost))
    again = {m[0]: m for m in (*lost, *recovered)}
    queue.enqueue(ctx, list(again.values()), as_of=None)
    queue.enqueue(ctx, [m for m in due if m[0] not in again], as_of=as_of)
    return Round(recovered=len(recovered), due=len(due), lost=len(lost))


class Janitor(threading.Thread):
    """A worker process's heartbeat and queue maintenance, in the background."""

    def __init__(self, ctx: queue.Context) -> None:
        super().__init__(name="outreach-janitor", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()

    def run(self) -> None:
        settings = self.ctx.settings
        next_round = 0.0
        clock = 0.0
        while True:
            try:
                with transaction(self.ctx.engine) as session:
                    workers.beat(session, self.ctx.worker_id, now=utcnow())
                brokers.beat(settings, self.ctx.broker, queues=queue.QUEUES)
                if clock >= next_round:
                    maintain(self.ctx)
                    next_round = clock + settings.maintenance_interval
            except Exception:
                log.exception("queue maintenance failed; trying again")
            if self.stopping.wait(settings.worker_heartbeat):
                return
            clock += settings.worker_heartbeat

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        with transaction(self.ctx.engine) as session:
            workers.retire(session, self.ctx.worker_id)

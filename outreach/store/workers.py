"""Worker processes and their heartbeats; taking back what a dead one held.

Each process that sends (a worker, or a command draining the embedded
broker) registers a row and beats every few seconds. A message in
``sending`` names its worker; when that worker's heartbeat is older than
the dead-after limit — or its process is gone from this host — the message
goes back to ``queued``, marked ``redelivered`` (the dead worker may have
handed it to the provider before it could record that). Times are the wall
clock's, never a simulated ``--now``.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, false, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.store import dialect
from outreach.store.models import Message, Worker

HOSTNAME = socket.gethostname()[:255]


def new_worker_id() -> str:
    return uuid.uuid4().hex


def beat(session: Session, worker_id: str, *, now: datetime) -> None:
    """Register this process or renew its heartbeat (idempotent)."""
    stmt = dialect.insert(session, Worker).values(id=worker_id, hostname=HOSTNAME, pid=os.getpid(),
                                                   started_at=now, heartbeat_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now}))


def retire(session: Session, worker_id: str) -> None:
    """A worker that stops cleanly leaves no row behind."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def dead_workers(session: Session, *, now: datetime, dead_after: timedelta) -> list[str]:
    """Workers whose heartbeat stopped, or whose process on this host is gone."""
    dead = []
    for worker_id, hostname, pid, heartbeat_at in session.execute(
        select(Worker.id, Worker.hostname, Worker.pid, Worker.heartbeat_at)
    ):
        if heartbeat_at < now - dead_after or (hostname == HOSTNAME and pid != os.getpid() and _process_gone(pid)):
            dead.append(worker_id)
    return dead


def recover(session: Session, *, now: datetime, dead_after: timedelta) -> list[tuple[int, int]]:
    """Give the messages of dead workers back to the queue; returns their
    (message id, rule id) to enqueue again. A message in ``sending`` whose
    worker never registered (or was retired) and that was claimed longer ago
    than ``dead_after`` is taken back too."""
    dead = dead_workers(session, now=now, dead_after=dead_after)
    unknown_worker = ~exists().where(Worker.id == Message.claimed_by)
    stale = and_(Message.claimed_at < now - dead_after, or_(Message.claimed_by.is_(None), unknown_worker))
    held_by_dead = Message.claimed_by.in_(dead) if dead else false()
    taken = session.execute(
        update(Message)
        .where(Message.status == MessageStatus.SENDING, or_(held_by_dead, stale))
        .values(status=MessageStatus.QUEUED, claimed_by=None, queued_at=now, redelivered=True,
                last_error="taken back from a worker that stopped mid-send; it may have been delivered already")
        .returning(Message.id, Message.rule_id)
    ).all()
    if dead:
        session.execute(delete(Worker).where(Worker.id.in_(dead)))
    return sorted((int(i), int(r)) for i, r in taken)

"""Opt-outs are never lost: a durable inbox beside an embedded database.

SQLite has one writer. While it is busy (a large import, a planning run), an
unsubscribe or a STOP reply cannot be written for as long as that takes —
and a sender who waits 30 s and gets a 500 has lost the customer's opt-out.
So on an embedded (SQLite file) installation every consent change a
customer makes (unsubscribe link, STOP, START, a channel turned off or a
topic or pause changed on the preference page) is first committed to a small
SQLite file of its own, ``<database>.optouts``, whose lock nothing else
holds: that commit is what makes the webhook answer 2xx. It is then applied
to the database at once when it is free, or as soon as it is free — by the
webhook server, by any worker's maintenance round, at the start of ``run``
and ``campaign launch`` — in the order the changes arrived, each with the
time it arrived. Until then, the worker's permission re-check reads the
inbox too: a pending opt-out stops a send as a recorded one does (a pending
topic turned off or pause as well: ``preferences.holds``).

PostgreSQL has row locks and many writers: consent changes are written to it
directly and there is no inbox.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from outreach import logs
from outreach.domain import Channel
from outreach.store import preferences, responses
from outreach.store.engine import SQLITE_BUSY_TIMEOUT_MS

log = logs.get_logger("outreach.optouts")

#: The inbox's file: the database's path plus this.
INBOX_SUFFIX = ".optouts"
#: How long applying an opt-out waits for the database before leaving it in
#: the inbox for the next try (the webhook has answered by then anyway).
APPLY_WAIT_MS = 1_000
#: How long writing to the inbox itself may wait (only other inbox writers hold it).
INBOX_WAIT_S = 10

Kind = Literal["unsubscribe", "stop_sms", "start_sms", "channel_off", "preferences"]
#: Kinds that are about an address of their own (``pending_addresses``): not START (it
#: opts in), not a preference change (topics and pauses are about a customer).
_NOT_ADDRESS_OPT_OUTS = ("start_sms", "preferences")

SCHEMA = """
CREATE TABLE IF NOT EXISTS optouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_optouts_pending ON optouts (id) WHERE applied = 0;
"""


@dataclass(frozen=True, kw_only=True)
class OptOut:
    """One consent change a customer made, as it arrived."""

    kind: Kind
    channel: Channel
    #: The address it is about (the message's recipient, the replying number).
    address: str
    received_at: datetime  # naive UTC
    source: str
    message_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    #: An SMS reply's words, kept as the consent's evidence (None: Twilio's ``Body`` in the payload).
    reply: str | None = None

    def apply(self, session: Session) -> None:
        """Record it in the database (idempotent: applying it twice changes nothing more)."""
        if self.kind == "unsubscribe":
            assert self.message_id is not None
            responses.unsubscribe(session, message_id=self.message_id, occurred_at=self.received_at,
                                  source=self.source)
        elif self.kind == "channel_off":
            preferences.channel_off(session, customer_id=int(self.payload["customer_id"]), channel=self.channel,
                                    address=self.address, at=self.received_at, source=self.source,
                                    evidence=str(self.payload.get("evidence", "")))
        elif self.kind == "preferences":
            preferences.apply(session, preferences.PreferenceChange.from_payload(self.payload), at=self.received_at,
                              source=self.source)
        elif self.kind == "stop_sms":
            responses.stop_sms(session, phone=self.address, occurred_at=self.received_at, source=self.source,
                               payload=self.payload, dedupe_key=self.dedupe_key, reply=self.reply)
        else:
            responses.start_sms(session, phone=self.address, occurred_at=self.received_at, source=self.source,
                                payload=self.payload, dedupe_key=self.dedupe_key, reply=self.reply)

    def to_json(self) -> str:
        body = asdict(self)
        body["channel"] = self.channel.value
        body["received_at"] = self.received_at.isoformat()
        return json.dumps(body, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> OptOut:
        body = json.loads(raw)
        body["channel"] = Channel(body["channel"])
        body["received_at"] = datetime.fromisoformat(body["received_at"])
        return cls(**body)


class Inbox:
    """The file of opt-outs not yet applied (stdlib sqlite3: one tiny table)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._drain_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=INBOX_WAIT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # committed = on disk: the webhook answers after this
            conn.executescript(SCHEMA)
            self._local.conn = conn
        return conn

    def put(self, optout: OptOut) -> int:
        cursor = self._conn().execute("INSERT INTO optouts (body, kind, channel, address) VALUES (?, ?, ?, ?)",
                                      (optout.to_json(), optout.kind, optout.channel.value, optout.address))
        return int(cursor.lastrowid or 0)

    def pending(self) -> list[tuple[int, OptOut]]:
        if not self.path.exists():
            return []
        rows = self._conn().execute("SELECT id, body FROM optouts WHERE applied = 0 ORDER BY id").fetchall()
        return [(row[0], OptOut.from_json(row[1])) for row in rows]

    def pending_addresses(self) -> set[tuple[Channel, str]]:
        """(channel, address) of every opt-out not applied yet (START replies excluded)."""
        if not self.path.exists():
            return set()
        rows = self._conn().execute(
            "SELECT channel, address FROM optouts WHERE applied = 0 AND kind NOT IN (?, ?)", _NOT_ADDRESS_OPT_OUTS)
        return {(Channel(channel), address) for channel, address in rows}

    def any_pending(self) -> bool:
        if not self.path.exists():
            return False
        return self._conn().execute("SELECT 1 FROM optouts WHERE applied = 0 LIMIT 1").fetchone() is not None

    def mark_applied(self, inbox_id: int) -> None:
        self._conn().execute("UPDATE optouts SET applied = 1 WHERE id = ?", (inbox_id,))

    @contextmanager
    def draining(self) -> Iterator[bool]:
        """Whether this caller may apply the inbox now: one at a time, across
        threads and processes (applying in order needs a single applier)."""
        if not self._drain_lock.acquire(blocking=False):
            yield False
            return
        try:
            with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            self._drain_lock.release()


_INBOXES: dict[str, Inbox] = {}
_INBOXES_LOCK = threading.Lock()


def inbox_for(engine: Engine) -> Inbox | None:
    """The inbox of an embedded database file; None on PostgreSQL and for an
    in-memory SQLite database (no other process can hold its lock for long)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file::memory:"):
        return None
    path = str(Path(url.database).resolve()) + INBOX_SUFFIX
    with _INBOXES_LOCK:
        return _INBOXES.setdefault(path, Inbox(Path(path)))


def submit(engine: Engine, *changes: OptOut) -> bool:
    """Make ``changes`` durable, then apply them (in order) if the database
    allows now. Returns once they are safe — True when recorded in the
    database, False when they wait in the inbox."""
    inbox = inbox_for(engine)
    if inbox is None:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            for change in changes:
                change.apply(session)
        return True
    for change in changes:
        inbox.put(change)
    drain(engine)
    return not inbox.any_pending()


def pending_changes(engine: Engine) -> list[preferences.PreferenceChange]:
    """Preference changes (topics, pauses) still in the inbox, in the order they arrived."""
    inbox = inbox_for(engine)
    if inbox is None:
        return []
    return [preferences.PreferenceChange.from_payload(o.payload) for _, o in inbox.pending() if o.kind == "preferences"]


def pending_channel_offs(engine: Engine, customer_id: int) -> set[Channel]:
    """Channels the customer turned off whose change still waits in the inbox."""
    inbox = inbox_for(engine)
    if inbox is None:
        return set()
    return {o.channel for _, o in inbox.pending()
            if o.kind == "channel_off" and int(o.payload.get("customer_id", 0)) == customer_id}


def settled(engine: Engine) -> bool:
    """Nothing waits in the inbox (after applying what the database allows
    now): a change that grants contact may be written directly without
    overtaking an older opt-out."""
    inbox = inbox_for(engine)
    if inbox is None:
        return True
    drain(engine)
    return not inbox.any_pending()


@contextmanager
def promptly(engine: Engine) -> Iterator[Session]:
    """A transaction that, on an embedded database whose writer lock is held,
    gives up after ``APPLY_WAIT_MS`` (OperationalError) instead of waiting
    30 s — for a page that should answer "try again in a minute" at once."""
    if inbox_for(engine) is None:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
        return
    with _waiting_at_most(engine, APPLY_WAIT_MS) as session:
        yield session


def drain(engine: Engine, *, wait_ms: int = APPLY_WAIT_MS) -> int:
    """Apply the inbox's opt-outs in the order they arrived, each in its own
    transaction; stop at the first the database is too busy for (the next
    drain goes on from there). Returns how many were applied."""
    inbox = inbox_for(engine)
    if inbox is None or not inbox.path.exists():
        return 0
    applied = 0
    with inbox.draining() as mine:
        if not mine:
            return 0
        for inbox_id, optout in inbox.pending():
            try:
                with _waiting_at_most(engine, wait_ms) as session:
                    optout.apply(session)
            except OperationalError as exc:
                log.info("database busy: opt-outs stay in the inbox for the next try", error=str(exc.orig))
                break
            inbox.mark_applied(inbox_id)
            applied += 1
    if applied:
        log.info("opt-outs applied from the inbox", count=applied)
    return applied


@contextmanager
def _waiting_at_most(engine: Engine, wait_ms: int) -> Iterator[Session]:
    """A transaction that waits at most ``wait_ms`` for SQLite's writer lock
    (``BEGIN IMMEDIATE``: the lock is taken first, so nothing read in it can
    be outdated by another writer before its own write)."""
    with Session(engine, expire_on_commit=False) as session:
        conn = session.connection()
        conn.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield session
                session.flush()
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            session.rollback()

"""An opt-out is never lost, even while the database is busy with something
long (an import, a planning run): the webhook answers within seconds, the
opt-out stops sends at once and is recorded as soon as the database is free."""

# The webhook tests' fixtures (``settings``, ``sent``) are imported, so the
# test functions' parameters of those names are fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain import Channel, ConsentStatus, EventType, MessageStatus
from outreach.sending import janitor, queue, tokens
from outreach.store import claims, optouts
from outreach.store.engine import transaction
from outreach.store.models import Message, Suppression, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.server import serve_in_thread
from test_webhooks import ARRIVAL, count, latest_consent, sent, settings, stop_form, twilio_post  # noqa: F401

#: Well under SQLite's 30 s busy timeout: the answer must not wait for the lock.
ANSWER_WITHIN_S = 8
#: The server applies the inbox every second once the database is free.
APPLIED_WITHIN_S = 10


@contextmanager
def database_busy(engine: Engine) -> Iterator[None]:
    """Another process holds the database as a long import would: SQLite's
    only writer lock; on PostgreSQL, every customer row updated in an open
    transaction."""
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(engine.url.database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        with engine.connect() as conn:
            conn.execute(text("UPDATE customers SET name = name"))
            yield
            conn.rollback()


@contextmanager
def webhooks(engine: Engine, settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings, engine, clock=lambda: ARRIVAL)
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base, timeout=60) as http:
        yield http


def unsubscribe(http: httpx.Client, settings: Settings, message_id: int) -> httpx.Response:
    path = tokens.unsubscribe_url(settings, message_id).removeprefix(settings.public_url)
    return http.post(path, data={"List-Unsubscribe": "One-Click"})


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def eventually(check: Callable[[], bool], within: float = APPLIED_WITHIN_S) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def queue_another(engine: Engine, message_id: int) -> int:
    """A second message to the same customer, claimed by a worker."""
    with transaction(engine) as s:
        first = s.get_one(Message, message_id)
        again = Message(rule_id=first.rule_id, customer_id=first.customer_id, channel=first.channel,
                        occurrence_key="k2", status=MessageStatus.SENDING, planned_at=first.planned_at,
                        attempts=1, claimed_by="w1")
        s.add(again)
        s.flush()
        return again.id


def test_opt_outs_during_a_long_write_are_answered_at_once_stop_sends_and_are_applied_after(
    engine: Engine, settings: Settings, sent: dict[str, int]
) -> None:
    later = {ext: queue_another(engine, mid) for ext, mid in sent.items()}
    with webhooks(engine, settings) as http:
        with database_busy(engine):
            # Given the database is held by a long write, when Ada unsubscribes and Wang replies STOP
            done, took = timed(lambda: unsubscribe(http, settings, sent["ada"]))
            assert done.status_code == 200 and "unsubscribed" in done.text and took < ANSWER_WITHIN_S
            stop, took = timed(lambda: twilio_post(http, settings, "/webhooks/twilio/inbound",
                                                   stop_form(Body="STOP")))
            assert stop.status_code == 200 and took < ANSWER_WITHIN_S
            # Then a worker's permission re-check already refuses both of their messages
            with engine.connect() as conn:
                refusals = {row.id: row.refusal() for row in claims.load_claimed(conn, list(later.values()))}
            if engine.dialect.name == "sqlite":  # from the inbox
                assert refusals == {later["ada"]: f"address suppressed ({claims.OPT_OUT_ARRIVING})",
                                    later["wang"]: f"address suppressed ({claims.OPT_OUT_ARRIVING})"}
            else:  # PostgreSQL took them at once, beside the other writer
                assert refusals == {later["ada"]: "no email consent (latest: revoked)",
                                    later["wang"]: "no sms consent (latest: revoked)"}
        # And once the database is free, both are recorded, at the time they arrived
        assert eventually(lambda: latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.REVOKED)
        assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.REVOKED
        assert count(engine, Suppression, Suppression.address.in_(["ada@example.com", "+8613800000001"])) == 2
        with Session(engine) as s:
            times = set(s.scalars(select(TrackingEvent.occurred_at)
                                  .where(TrackingEvent.type.in_([EventType.UNSUBSCRIBE, EventType.STOP]))))
        assert times == {ARRIVAL}
        # And the worker's re-check now reads the recorded opt-outs
        with engine.connect() as conn:
            rows = claims.load_claimed(conn, list(later.values()))
        assert all(r.refusal() and claims.OPT_OUT_ARRIVING not in (r.refusal() or "") for r in rows)
    inbox = optouts.inbox_for(engine)
    assert inbox is None if engine.dialect.name == "postgresql" else inbox is not None and inbox.pending() == []


def test_opt_outs_left_in_the_inbox_by_a_stopped_server_are_applied_in_order_at_the_next_start(
    engine: Engine, settings: Settings, sent: dict[str, int]
) -> None:
    with webhooks(engine, settings) as http, database_busy(engine):
        # Given STOP, then START, arrive while the database is busy, and the server stops
        for word in ("STOP", "START"):
            assert twilio_post(http, settings, "/webhooks/twilio/inbound",
                               stop_form(Body=word, MessageSid=f"SM-{word}")).status_code == 200
    if engine.dialect.name == "sqlite":
        assert [o.kind for _, o in optouts.inbox_for(engine).pending()] == ["stop_sms", "start_sms"]  # type: ignore[union-attr]
    # When a server starts again
    with webhooks(engine, settings):
        # Then both are applied in the order they arrived: Wang is subscribed again, not suppressed
        assert eventually(lambda: count(engine, TrackingEvent, TrackingEvent.type == EventType.REPLY) == 1)
        assert count(engine, TrackingEvent, TrackingEvent.type == EventType.STOP) == 1
        assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED
        assert count(engine, Suppression, Suppression.address == "+8613800000001") == 0


def test_a_worker_maintenance_round_applies_the_inbox(
    engine: Engine, settings: Settings, sent: dict[str, int]
) -> None:
    if engine.dialect.name == "postgresql":
        # No inbox there: the opt-out is written at once even while customers are being updated.
        with webhooks(engine, settings) as http, database_busy(engine):
            done, took = timed(lambda: unsubscribe(http, settings, sent["ada"]))
            assert done.status_code == 200 and took < ANSWER_WITHIN_S
            assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.REVOKED
        return
    inbox = optouts.inbox_for(engine)
    assert inbox is not None
    with database_busy(engine):
        optouts.submit(engine, optouts.OptOut(kind="unsubscribe", channel=Channel.EMAIL, address="ada@example.com",
                                              received_at=ARRIVAL - timedelta(minutes=1), source="unsubscribe-link",
                                              message_id=sent["ada"]))
        assert len(inbox.pending()) == 1
    # When a worker's maintenance round runs (every worker process, `run` and `campaign launch` make one)
    janitor.maintain(queue.setup(settings, engine))
    # Then the opt-out is recorded, at the time it arrived
    assert inbox.pending() == []
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.REVOKED
    with Session(engine) as s:
        assert s.scalar(select(TrackingEvent.occurred_at)
                        .where(TrackingEvent.type == EventType.UNSUBSCRIBE)) == ARRIVAL - timedelta(minutes=1)

"""Every broker (the ``broker`` fixture: in-process and Redis) carries the
same guarantees: each planned message is delivered exactly once, even when
the broker hands it over more than once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from dramatiq import Worker
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach import brokers
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.errors import ConfigError
from outreach.planning.launch import plan_rule
from outreach.sending import queue
from outreach.store.engine import transaction
from outreach.store.models import ConsentRecord, Message
from policy_factories import make_settings
from test_sending import NOW, rule, shop

#: How long a worker may take to deliver a handful of messages.
DELIVERY_DEADLINE_S = 60


def deliver_everything(ctx: queue._Context) -> None:
    """What the broker's workers do: the in-process broker drains here; with
    Redis, a Dramatiq worker (threads in this process) consumes the queue in
    Redis until it is empty and the work in hand is done."""
    if brokers.in_process(ctx.settings.broker_url):
        queue.drain(ctx)
        return
    worker = Worker(ctx.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        ctx.broker.join(queue.QUEUE, timeout=DELIVERY_DEADLINE_S * 1000)
        worker.join()
    finally:
        worker.stop()


def finished(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).where(Message.status == MessageStatus.SENT)) or 0


def test_every_message_is_delivered_once_though_enqueued_twice(
    engine: Engine, db_url: str, broker: dict[str, str], tmp_path: Path
) -> None:
    # Given five customers with consent, planned and queued by a rule
    settings = make_settings(tmp_path, db_url, **broker)
    shop(engine, customers=[
        {"ext": f"c{i}", "email": f"c{i}@example.com", "consent": {"email": "granted"}} for i in range(5)
    ])
    _, ids = plan_rule(engine, rule(), now=NOW)
    # When every message is handed to the broker twice (at-least-once delivery)
    ctx = queue.setup(settings, engine)
    queue.enqueue(ctx, ids, as_of=NOW)
    queue.enqueue(ctx, ids, as_of=NOW)
    deliver_everything(ctx)
    # Then each customer got exactly one email, claimed once
    assert finished(engine) == 5
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 5
    with Session(engine) as s:
        assert set(s.scalars(select(Message.attempts))) == {1}


def test_a_message_revoked_while_queued_is_skipped_by_every_broker(
    engine: Engine, db_url: str, broker: dict[str, str], tmp_path: Path
) -> None:
    # Given a queued message whose customer then unsubscribes
    settings = make_settings(tmp_path, db_url, **broker)
    customer = shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, ids = plan_rule(engine, rule(), now=NOW)
    with transaction(engine) as s:
        s.add(ConsentRecord(customer_id=customer["a"], channel=Channel.EMAIL, status=ConsentStatus.REVOKED,
                            source="unsubscribe", recorded_at=NOW + timedelta(minutes=1)))
    # When the broker delivers it
    ctx = queue.setup(settings, engine)
    queue.enqueue(ctx, ids, as_of=NOW)
    deliver_everything(ctx)
    # Then nothing was sent
    with Session(engine) as s:
        assert s.scalar(select(Message.status)) is MessageStatus.SKIPPED
    assert not list((tmp_path / "outbox").rglob("*.eml"))


@pytest.mark.parametrize("url, in_process", [("memory://", True), ("redis://127.0.0.1:6379/0", False),
                                             ("rediss://cache.internal:6380/0", False),
                                             ("unix:///run/redis.sock", False)])
def test_the_url_scheme_chooses_the_broker(url: str, in_process: bool) -> None:
    assert brokers.in_process(url) is in_process


def test_an_unknown_broker_scheme_names_the_setting_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"OUTREACH_BROKER_URL 'amqp://mq' is not supported.*redis://"):
        brokers.module_for("amqp://mq")

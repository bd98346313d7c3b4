"""Never twice, never lost — under faults, with real processes.

Each test runs a campaign of a few hundred emails through `outreach worker`
(two processes, Redis of the test's own) into a slow SMTP relay that counts
Message-IDs, breaks something mid-campaign, and checks afterwards that
every planned message arrived exactly once — except, after a `kill -9`, the
messages the killed process held, which are reported as redelivered and may
have arrived twice. On SQLite and on PostgreSQL; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fault_harness import NOW, RULE_NAME, Installation, OwnRedis, Relay, installation, populate
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.store.engine import transaction
from outreach.store.models import ConsentRecord, Message, Worker

CUSTOMERS = 400
#: Seconds the relay takes per message: a campaign lasts a few seconds, long
#: enough to break something in the middle of it.
RELAY_DELAY = 0.02
#: A crashed worker's messages must be back in the queue within this.
RECOVERY_S = 60.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay(delay=RELAY_DELAY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shop(tmp_path: Path, engine: Engine, db_url: str, redis_server: OwnRedis, relay: Relay) -> Iterator[Installation]:
    populate(engine, CUSTOMERS)
    with installation(tmp_path, engine, db_url, broker_url=redis_server.url, relay=relay) as setup:
        yield setup


def assert_each_sent_once(shop: Installation, relay: Relay, *, duplicates_allowed: int = 0) -> None:
    planned = shop.message_ids()
    copies = relay.copies()
    assert shop.message_ids(MessageStatus.SENT) == planned, shop.counts()
    assert set(copies) == planned
    duplicated = sum(n - 1 for n in copies.values())
    assert duplicated <= duplicates_allowed, f"{duplicated} duplicates, {duplicates_allowed} allowed"


def status_of(shop: Installation) -> dict:
    [row] = json.loads(shop.outreach("campaign", "status", RULE_NAME, "--format", "json").stdout)
    return row


def test_a_worker_process_killed_mid_batch_loses_nothing_and_reports_what_it_held(
    shop: Installation, relay: Relay
) -> None:
    # Given a campaign being sent by two worker processes
    shop.launch()
    supervisor = shop.start_worker()
    shop.wait_for(lambda: shop.sent() >= 60, what="the first messages to be sent")
    # When one process is killed while it holds a batch
    with Session(shop.engine) as s:
        victim = s.scalar(select(Worker.pid).join(Message, Message.claimed_by == Worker.id)
                          .where(Message.status == MessageStatus.SENDING).limit(1))
    assert victim is not None, shop.counts()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # Then every message is sent within a minute — the other process goes on,
    # the supervisor starts a new one, the dead one's messages come back
    shop.wait_for(lambda: shop.sent() == CUSTOMERS, what="every message to be sent", timeout=RECOVERY_S)
    assert time.monotonic() - killed_at < RECOVERY_S
    assert supervisor.poll() is None, "one dead process stopped the whole worker"
    assert "worker process died; starting another" in shop.log.read_text()
    # And a copy may have arrived twice only for what the killed process held, which is reported
    redelivered = shop.redelivered()
    assert 0 < redelivered <= 200
    assert_each_sent_once(shop, relay, duplicates_allowed=redelivered)
    assert status_of(shop)["redelivered"] == redelivered


def test_redis_restarted_mid_campaign_loses_nothing(
    shop: Installation, relay: Relay, redis_server: OwnRedis
) -> None:
    # Given a campaign being sent
    shop.launch()
    shop.start_worker()
    shop.wait_for(lambda: shop.sent() >= 60, what="the first messages to be sent")
    # When Redis dies, losing every queued broker message, and comes back empty
    redis_server.stop()
    time.sleep(2)
    redis_server.start()
    # Then the queued messages are handed to the workers again and sent, each once
    shop.wait_for(lambda: shop.sent() == CUSTOMERS, what="every message to be sent")
    assert_each_sent_once(shop, relay)
    assert shop.redelivered() == 0


def test_smtp_server_down_then_up_is_an_outage_not_a_failure(shop: Installation, relay: Relay) -> None:
    # Given a campaign being sent
    shop.launch()
    shop.start_worker()
    shop.wait_for(lambda: shop.sent() >= 60, what="the first messages to be sent")
    # When the relay goes away for a few seconds (connections refused) and comes back
    relay.stop()
    time.sleep(5)
    down = shop.counts()
    relay.start()
    # Then nothing failed: the messages waited and went out once the relay answered
    shop.wait_for(lambda: shop.sent() == CUSTOMERS, what="every message to be sent")
    assert MessageStatus.FAILED.value not in down
    assert_each_sent_once(shop, relay)


def test_consent_revoked_after_planning_is_not_sent(shop: Installation, relay: Relay) -> None:
    # Given a campaign planned and queued, no worker running yet
    shop.launch()
    queued = sorted(shop.message_ids())
    # When a quarter of the customers unsubscribe before the workers start
    with Session(shop.engine) as s:
        revoking = {m.id: m.customer_id for m in s.scalars(select(Message).where(Message.id.in_(queued[::4])))}
    with transaction(shop.engine) as s:
        s.add_all(ConsentRecord(customer_id=cid, channel=Channel.EMAIL, status=ConsentStatus.REVOKED,
                                source="unsubscribe", recorded_at=datetime.now()) for cid in revoking.values())
    shop.start_worker()
    # Then they get nothing; everyone else gets one email
    shop.wait_for(lambda: shop.counts().get("queued", 0) == 0, what="the queue to be worked through")
    settled = shop.wait_until_settled()
    assert settled == {"sent": CUSTOMERS - len(revoking), "skipped": len(revoking)}
    assert set(relay.copies()) == set(queued) - set(revoking)
    assert set(relay.copies().values()) == {1}


def test_pause_resume_and_cancel_mid_campaign(shop: Installation, relay: Relay) -> None:
    # Given a campaign being sent slowly (so commands land mid-campaign), which `campaign status` shows live
    relay.sink.delay = 0.25
    shop.launch()
    shop.start_worker()
    shop.wait_for(lambda: shop.sent() >= 40, what="the first messages to be sent")
    live = status_of(shop)
    assert live["state"] == "active" and live["outstanding"] > 0 and live["rate_per_second"] > 0
    # When it is paused: the batches in hand finish, then nothing more is sent
    shop.outreach("campaign", "pause", RULE_NAME)
    paused = shop.wait_until_settled()
    assert 0 < paused["sent"] < CUSTOMERS and paused["queued"] > 0
    assert sum(relay.copies().values()) == paused["sent"]
    assert status_of(shop)["state"] == "paused"
    # When it is resumed for a while, then cancelled
    shop.outreach("campaign", "resume", RULE_NAME)
    shop.wait_for(lambda: shop.sent() >= paused["sent"] + 40, what="sending to go on after resume")
    shop.outreach("campaign", "cancel", RULE_NAME, "--yes")
    # Then what was not yet sent never is, and what was sent arrived once
    final = shop.wait_until_settled()
    assert final["sent"] + final["skipped"] == CUSTOMERS and final["skipped"] > 0
    cancelled = status_of(shop)["counts"]
    assert cancelled["cancelled"] == final["skipped"]
    sent = shop.message_ids(MessageStatus.SENT)
    assert set(relay.copies()) == sent and set(relay.copies().values()) == {1}


def test_two_runs_at_once_and_a_later_run_while_sending_send_each_message_once(
    shop: Installation, relay: Relay
) -> None:
    # Given workers running
    shop.start_worker()
    # When two `outreach run` start at the same moment, and a third with a
    # later --now while the workers are still sending
    now = f"{NOW:%Y-%m-%dT%H:%M:%S}Z"
    runs = [shop.start_in_background("run", "--now", now) for _ in range(2)]
    for run in runs:
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output
    shop.wait_for(lambda: shop.sent() >= 20, what="the first messages to be sent")
    shop.outreach("run", "--now", "2026-06-01T12:00:00Z")
    # Then the campaign was planned once and every message sent once
    shop.wait_for(lambda: shop.sent() == CUSTOMERS, what="every message to be sent")
    assert len(shop.message_ids()) == CUSTOMERS
    assert_each_sent_once(shop, relay)


def test_two_embedded_runs_at_once_write_each_message_once(
    tmp_path: Path, sqlite_url: str, relay: Relay
) -> None:
    # Given the embedded default: SQLite, the in-process broker, the file outbox
    from outreach.store.engine import make_engine

    engine = make_engine(sqlite_url)
    populate(engine, CUSTOMERS)
    with installation(tmp_path, engine, sqlite_url, broker_url="memory://", relay=relay,
                      OUTREACH_EMAIL_TRANSPORT="outbox") as shop:
        # When two `outreach run` start at the same moment, each planning and sending in its own process
        now = f"{NOW:%Y-%m-%dT%H:%M:%S}Z"
        runs = [shop.start_in_background("run", "--now", now) for _ in range(2)]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        # Then the campaign was planned once and each message claimed and written once
        assert shop.counts() == {"sent": CUSTOMERS}
        with Session(engine) as s:
            assert set(s.scalars(select(Message.attempts))) == {1}
        assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == CUSTOMERS
    engine.dispose()

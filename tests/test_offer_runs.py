"""Codes given exactly once with real processes: two `outreach run` started at
the same moment — with Redis and two `outreach worker` processes on
PostgreSQL and SQLite, and embedded (each run sending in its own process) on
SQLite — send every message once, each with a code no other message has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fault_harness import NOW, RULE_NAME, Installation, Relay, installation, populate
from offer_helpers import CODE_IN_TEXT, codes_by_message, generate_codes, offer_templates
from outreach.domain import MessageStatus

CUSTOMERS = 150
CODES = 160
RULE = f"""
name: {RULE_NAME}
trigger: {{type: inactivity, days: 30}}
template: spring
channels: [email]
holdout_percent: 10
offer: {{pool: spring15, discount: 15%, valid_days: 14}}
"""


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay(delay=0.0)
    server.start()
    yield server
    server.stop()


def two_runs_at_once(shop: Installation) -> None:
    now = f"{NOW:%Y-%m-%dT%H:%M:%S}Z"
    runs = [shop.start_in_background("run", "--now", now) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs


def assert_each_sent_once_with_its_own_code(shop: Installation, relay: Relay, engine: Engine) -> None:
    counts = shop.counts()
    assert set(counts) == {"sent", "held_out"} and counts["sent"] + counts["held_out"] == CUSTOMERS, counts
    given = codes_by_message(engine)
    assert set(given) == shop.message_ids(MessageStatus.SENT) and len(set(given.values())) == len(given)
    copies = relay.copies()
    assert set(copies.values()) == {1} and set(copies) == set(given)
    delivered = {}
    for received in relay.sink.received:
        message = received.parsed()
        message_id = int(str(message["Message-ID"]).split("-msg-")[1].split("@")[0])
        delivered[message_id] = CODE_IN_TEXT.findall(message.get_body(("plain",)).get_content())
    assert delivered == {m: [code] for m, code in given.items()}


def test_two_runs_at_once_with_two_workers_give_each_message_one_code(
    tmp_path: Path, engine: Engine, db_url: str, redis_url: str, relay: Relay
) -> None:
    # Given lapsed customers, a pool with a code for each, and two worker processes on Redis
    populate(engine, CUSTOMERS)
    generate_codes(engine, "spring15", CODES)
    with installation(tmp_path, engine, db_url, broker_url=redis_url, relay=relay, rule=RULE,
                      OUTREACH_TEMPLATES_DIR=str(offer_templates(tmp_path))) as shop:
        shop.start_worker(processes=2)
        # When two `outreach run` start at the same moment
        two_runs_at_once(shop)
        shop.wait_for(lambda: shop.counts().get("sent", 0) + shop.counts().get("held_out", 0) == CUSTOMERS
                      and not {"queued", "sending", "planned"} & set(shop.counts()), what="every message to be sent")
        # Then each planned message was sent once, with a code of its own; the control group took none
        assert_each_sent_once_with_its_own_code(shop, relay, engine)


def test_two_embedded_runs_at_once_give_each_message_one_code(tmp_path: Path, sqlite_url: str, relay: Relay) -> None:
    from outreach.store.engine import make_engine

    sqlite = make_engine(sqlite_url)
    populate(sqlite, CUSTOMERS)
    generate_codes(sqlite, "spring15", CODES)
    # Given the embedded default: SQLite, the in-process broker, each run sending in its own process
    with installation(tmp_path, sqlite, sqlite_url, broker_url="memory://", relay=relay, rule=RULE,
                      OUTREACH_TEMPLATES_DIR=str(offer_templates(tmp_path))) as shop:
        two_runs_at_once(shop)
        assert_each_sent_once_with_its_own_code(shop, relay, sqlite)
    sqlite.dispose()

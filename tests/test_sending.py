"""Sending: permission re-checked at send time, exactly once per message."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import loaded_rule
from outreach.clock import utcnow
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.planning.launch import launch, plan_rule
from outreach.rules import LoadedRule
from outreach.sending import janitor, queue
from outreach.sending.deliver import Sender
from outreach.sending.retry import RetryPolicy
from outreach.store import workers
from outreach.store.engine import transaction
from outreach.store.models import ConsentRecord, Customer, Message, Order, OrderItem, Suppression
from policy_factories import make_settings

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 6, 1, 9, 0)
RULE = """
name: winback-test
trigger: {type: inactivity, days: 30}
template: winback
channels: [email, sms]
cost: {email: 0.01, sms: 0.05}
"""


def rule(text: str = RULE) -> LoadedRule:
    return loaded_rule(text, "winback-test.yaml")


def shop(engine: Engine, *, customers: list[dict]) -> dict[str, int]:
    """Customers who last ordered 40 days ago, with the given consents."""
    ids = {}
    with transaction(engine) as s:
        for spec in customers:
            c = Customer(
                external_id=spec["ext"], name=spec.get("name", "Ada Lovelace"),
                email=spec.get("email"), phone=spec.get("phone"),
                locale=spec.get("locale", "en"), timezone="UTC", birthday=date(1990, 1, 1),
                birth_month=1, birth_day=1, created_at=NOW - timedelta(days=400), updated_at=NOW,
            )
            s.add(c)
            s.flush()
            for channel, status in spec.get("consent", {}).items():
                s.add(ConsentRecord(customer_id=c.id, channel=Channel(channel),
                                    status=ConsentStatus(status), source="test",
                                    recorded_at=NOW - timedelta(days=100)))
            order = Order(external_id=f"o-{spec['ext']}", customer_id=c.id,
                          ordered_at=NOW - timedelta(days=40), amount=Decimal("50"))
            order.items = [OrderItem(sku="LJ-100", category="tea")]
            s.add(order)
            ids[spec["ext"]] = c.id
    return ids


def statuses(engine: Engine) -> dict[int, MessageStatus]:
    with Session(engine) as s:
        return {m.customer_id: m.status for m in s.scalars(select(Message))}


def test_launch_delivers_valid_mime_with_one_click_unsubscribe(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a lapsed customer with email consent and a Chinese-speaking one with SMS consent only
    settings = make_settings(tmp_path, db_url)
    ids = shop(engine, customers=[
        {"ext": "en1", "email": "ada@example.com", "consent": {"email": "granted"}},
        {"ext": "zh1", "name": "王小明", "locale": "zh_CN", "email": "wang@example.cn",
         "phone": "+8613800000001", "consent": {"email": "revoked", "sms": "granted"}},
    ])
    # When the rule is launched (embedded broker: delivered before returning)
    results = launch(settings, engine, [rule()], now=NOW, simulated=True)
    # Then both got one message, on their permitted channel
    assert results[0].planned == 2
    assert statuses(engine) == {ids["en1"]: MessageStatus.SENT, ids["zh1"]: MessageStatus.SENT}
    emls = list((tmp_path / "outbox" / "email").glob("*.eml"))
    assert len(emls) == 1
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg["To"] == "ada@example.com"
    assert msg["Subject"].startswith("Ada, we saved")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<http") and "/u/" in msg["List-Unsubscribe"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Hello Ada" in html and "/o/" in html and "/c/" in html
    assert "shop.jadeleaf.example" not in html.split("/o/")[0].split("href=")[-1]  # links tracked
    assert "Unsubscribe" in text
    assert msg["Date"].datetime == NOW.replace(tzinfo=UTC)  # the simulated send time, as in the database
    sms = [json.loads(line) for line in (tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()]
    assert [s["to"] for s in sms] == ["+8613800000001"]
    assert "王小明" in sms[0]["body"] and "回复TD退订" in sms[0]["body"]
    assert sms[0]["sent_at"] == NOW.replace(tzinfo=UTC).isoformat()
    with Session(engine) as s:
        sms_row = s.scalar(select(Message).where(Message.channel == Channel.SMS))
        assert sms_row.cost == Decimal("0.05") * sms[0]["segments"]
        assert sms_row.sent_at == NOW and sms_row.attribute_until == NOW + timedelta(days=7)


def ids_of(queued: list[tuple[int, int]]) -> list[int]:
    return [message_id for message_id, _ in queued]


def test_consent_revoked_after_planning_stops_the_send(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a message planned and queued while the customer had consent
    settings = make_settings(tmp_path, db_url)
    ids = shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, queued = plan_rule(engine, rule(), now=NOW)
    assert len(queued) == 1
    # When the customer unsubscribes before a worker picks it up
    with transaction(engine) as s:
        s.add(ConsentRecord(customer_id=ids["a"], channel=Channel.EMAIL, status=ConsentStatus.REVOKED,
                            source="unsubscribe", recorded_at=NOW + timedelta(minutes=1)))
    ctx = queue.setup(settings, engine)
    queue.enqueue(ctx, queued, as_of=NOW)
    queue.drain(ctx)
    # Then nothing is delivered and the message says why
    assert statuses(engine) == {ids["a"]: MessageStatus.SKIPPED}
    assert not (tmp_path / "outbox" / "email").exists() or not list((tmp_path / "outbox" / "email").iterdir())
    with Session(engine) as s:
        assert "no email consent" in s.scalar(select(Message.last_error))


def test_suppressed_after_planning_stops_the_send(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_url)
    ids = shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, queued = plan_rule(engine, rule(), now=NOW)
    with transaction(engine) as s:
        s.add(Suppression(channel=Channel.EMAIL, address="a@example.com", reason="bounce", created_at=NOW))
    tally = Sender(settings, engine, worker_id="w1").deliver(ids_of(queued))
    assert (tally.claimed, tally.skipped, tally.sent) == (1, 1, 0)
    assert statuses(engine) == {ids["a"]: MessageStatus.SKIPPED}


def test_duplicate_broker_delivery_sends_once(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given one queued email and one queued SMS
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=[
        {"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}},
        {"ext": "b", "phone": "+447700900123", "consent": {"sms": "granted"}},
    ])
    _, queued = plan_rule(engine, rule(), now=NOW)
    # When the broker delivers every batch three times, to concurrent threads
    ctx = queue.setup(settings, engine)
    for _ in range(3):
        queue.enqueue(ctx, queued, as_of=NOW)
    queue.drain(ctx, threads=4)
    # Then each customer received exactly one message
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1
    assert len((tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()) == 1
    with Session(engine) as s:
        rows = s.scalars(select(Message)).all()
        assert [m.status for m in rows] == [MessageStatus.SENT, MessageStatus.SENT]
        assert [m.attempts for m in rows] == [1, 1]


def test_second_launch_plans_nothing(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    first = launch(settings, engine, [rule()], now=NOW, simulated=True)
    second = launch(settings, engine, [rule()], now=NOW + timedelta(hours=3), simulated=True)
    assert (first[0].planned, second[0].planned) == (1, 0)
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1


def test_a_dead_workers_message_is_taken_back_sent_once_and_reported(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given a worker that claimed a message, delivered it, and died before recording that
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, queued = plan_rule(engine, rule(), now=NOW)
    Sender(settings, engine, worker_id="dead").deliver(ids_of(queued))
    long_ago = utcnow() - timedelta(minutes=5)
    with transaction(engine) as s:  # its last heartbeat five minutes ago; its bookkeeping undone
        workers.beat(s, "dead", now=long_ago)
        m = s.get(Message, ids_of(queued)[0])
        m.status, m.sent_at, m.claimed_by, m.claimed_at = MessageStatus.SENDING, None, "dead", long_ago
    # When the janitor of a live worker makes its round
    ctx = queue.setup(settings, engine)
    assert janitor.maintain(ctx).recovered == 1
    queue.drain(ctx)
    # Then the message is sent, recorded once, marked as possibly delivered twice —
    # and the file outbox, which never writes a message twice, holds one copy
    with Session(engine) as s:
        m = s.get(Message, ids_of(queued)[0])
        assert (m.status, m.redelivered) == (MessageStatus.SENT, True)
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1


def test_a_live_workers_messages_are_never_taken_back(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a message in the hands of a worker that keeps beating, claimed long ago
    settings = make_settings(tmp_path, db_url)
    shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, queued = plan_rule(engine, rule(), now=NOW)
    with transaction(engine) as s:
        workers.beat(s, "busy", now=utcnow())
        m = s.get(Message, ids_of(queued)[0])
        m.status, m.claimed_by, m.claimed_at = MessageStatus.SENDING, "busy", utcnow() - timedelta(hours=1)
    # When the janitor makes its round — also as `run --now` a month later does
    ctx = queue.setup(settings, engine)
    assert janitor.maintain(ctx, due_by=NOW + timedelta(days=30)).recovered == 0
    # Then the message stays with its worker
    assert statuses(engine) == {m.customer_id: MessageStatus.SENDING}


def tried_once_waits(engine: Engine, sender: Sender, message_id: int, *, wait: float, error: str) -> None:
    """Delivering ``message_id`` fails transiently: it is planned again for
    ``wait`` seconds later (up to its jitter), with the error kept."""
    before = utcnow()
    assert sender.deliver([message_id]).retried == 1
    with Session(engine) as s:
        m = s.get(Message, message_id)
        assert (m.status, m.attempts) == (MessageStatus.PLANNED, 1)
        assert before + timedelta(seconds=wait) <= m.not_before <= utcnow() + timedelta(seconds=wait * 1.1)
        assert error in m.last_error


def test_a_provider_outage_is_retried_later_then_given_up(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given SMTP pointed at a port where nothing listens
    settings = make_settings(tmp_path, db_url, email_transport="smtp", smtp_host="127.0.0.1",
                             smtp_port=1, smtp_timeout=2, retry_base=60, retry_max=600, retry_for_hours=1)
    shop(engine, customers=[{"ext": "a", "email": "a@example.com", "consent": {"email": "granted"}}])
    _, queued = plan_rule(engine, rule(), now=NOW)
    sender = Sender(settings, engine, worker_id="w1")
    # When delivery fails, the message waits (planned) for a later attempt, not failed
    tried_once_waits(engine, sender, ids_of(queued)[0], wait=60, error="cannot be reached")
    # And once the retry window is spent, it fails for good (`campaign retry` can send it again)
    with transaction(engine) as s:
        m = s.get(Message, ids_of(queued)[0])
        last_chance = RetryPolicy.from_settings(settings).max_attempts - 1
        m.status, m.attempts, m.not_before = MessageStatus.QUEUED, last_chance, None
    assert sender.deliver(ids_of(queued)).failed == 1
    with Session(engine) as s:
        m = s.get(Message, ids_of(queued)[0])
        assert m.status is MessageStatus.FAILED and m.last_error.startswith("gave up after")


def test_retries_over_days_with_a_short_cap_count_every_attempt_without_overflowing() -> None:
    # Given retries one second apart at most, for two days (the fault tests' settings)
    policy = RetryPolicy(base=1, cap=2, total=48 * 3600)
    # Then every attempt that fits is counted (1 s, then 2 s each: 86,400 waits in all) …
    waited = sum(policy.delay(n) for n in range(1, policy.max_attempts))
    assert waited <= policy.total < waited + policy.delay(policy.max_attempts)
    assert policy.max_attempts == 86_401
    # … and a message far along still gets its next attempt (2.0 ** 86,000 would overflow)
    now = datetime(2026, 1, 1)
    assert now + timedelta(seconds=2) <= policy.next_attempt(86_000, now=now) <= now + timedelta(seconds=2.2)
    assert policy.next_attempt(86_401, now=now) is None


def test_a_provider_asking_to_wait_longer_than_the_backoff_is_obeyed(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    from twilio_server import twilio_server

    with twilio_server(account_sid="AC" + "0" * 32, auth_token="t" * 32) as twilio:
        # Given Twilio rate-limits the next request and asks for two hours (the backoff would be a minute)
        twilio.state.fail_next(1, status=429, retry_after="7200")
        settings = make_settings(tmp_path, db_url, sms_transport="twilio", twilio_base_url=twilio.url,
                                 twilio_account_sid="AC" + "0" * 32, twilio_auth_token="t" * 32,
                                 twilio_from="+15005550006", retry_base=60, retry_max=600)
        shop(engine, customers=[{"ext": "a", "phone": "+15005550010", "consent": {"sms": "granted"}}])
        _, queued = plan_rule(engine, rule(), now=NOW)
        sender = Sender(settings, engine, worker_id="w1")
        # When the message is tried, it waits, planned, as long as the provider asked
        tried_once_waits(engine, sender, ids_of(queued)[0], wait=7200, error="HTTP 429")
    # And nothing was sent
    assert twilio.state.created == []


def test_launch_delivers_through_a_real_smtp_server(engine: Engine, db_url: str, tmp_path: Path) -> None:
    from smtp_server import smtp_server

    # Given an installation configured for SMTP, and a server that refuses one mailbox
    with smtp_server(refuse={"gone@example.com": "550 5.1.1 mailbox unavailable"}) as server:
        settings = make_settings(tmp_path, db_url, email_transport="smtp", smtp_host=server.host,
                                 smtp_port=server.port)
        ids = shop(engine, customers=[
            {"ext": "a", "name": "王小明", "locale": "zh_CN", "email": "wang@example.cn",
             "consent": {"email": "granted"}},
            {"ext": "b", "email": "gone@example.com", "consent": {"email": "granted"}},
        ])
        # When the rule is launched
        launch(settings, engine, [rule()], now=NOW, simulated=True)
        received = list(server.received)
    # Then the server received exactly the one deliverable message, in Chinese, with RFC 8058 headers
    assert [r.rcpt_tos for r in received] == [["wang@example.cn"]]
    message = received[0].parsed()
    assert message["Subject"].startswith("王小明，好久不见")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # And the refused mailbox is failed, not retried forever
    assert statuses(engine) == {ids["a"]: MessageStatus.SENT, ids["b"]: MessageStatus.FAILED}

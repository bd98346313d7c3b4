"""Opens and clicks are written in groups (outreach.webhooks.batching): under
concurrent requests over real HTTP, every open or click answered as a
success is stored, and one that could not be stored is never answered so."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from factories import NOW, add_customer
from outreach.config import Settings, load_settings
from outreach.domain import Channel, EventType, MessageStatus
from outreach.sending import tokens
from outreach.store.engine import transaction
from outreach.store.models import Message, Rule, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.server import free_port, serve_in_thread, wait_until_healthy

#: Requests in flight at once: more than one batch's worth arrives while one is written.
CONCURRENT = 200


@pytest.fixture
def settings() -> Settings:
    return load_settings(public_url="http://bench.invalid", secret_key="s3cret", order_webhook_secret="shop")


@pytest.fixture
def message_ids(engine: Engine) -> list[int]:
    """Five customers, each sent one email."""
    with transaction(engine) as s:
        rule = Rule(name="winback", path="rules/winback.yaml", definition={}, checksum="x", updated_at=NOW)
        s.add(rule)
        s.flush()
        ids = []
        for n in range(5):
            customer = add_customer(s, f"c{n}", email=f"c{n}@example.com", consent={"email": "granted"})
            m = Message(rule_id=rule.id, customer_id=customer.id, channel=Channel.EMAIL, occurrence_key="k",
                        status=MessageStatus.SENT, to_address=f"c{n}@example.com", planned_at=NOW, sent_at=NOW,
                        attempts=1)
            s.add(m)
            s.flush()
            ids.append(m.id)
    return ids


@pytest.fixture
def base(engine: Engine, settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(settings, engine, clock=lambda: NOW)) as url:
        yield url


def path(settings: Settings, url: str) -> str:
    return url.removeprefix(settings.public_url)


def fetch_all(base: str, paths: list[str]) -> list[httpx.Response]:
    """GET every path at once over real HTTP (a connection each: none is
    reused just as the server closes it for being idle, on a loaded machine)."""
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            return list(await asyncio.gather(*(http.get(p) for p in paths)))
    return asyncio.run(run())


def stored(engine: Engine, kind: EventType) -> list[tuple[int | None, int | None, str | None]]:
    with Session(engine) as s:
        return [tuple(row) for row in s.execute(  # type: ignore[misc]
            select(TrackingEvent.message_id, TrackingEvent.customer_id, TrackingEvent.url)
            .where(TrackingEvent.type == kind).order_by(TrackingEvent.id))]


def test_every_open_and_click_answered_under_concurrent_requests_is_stored(
        engine: Engine, settings: Settings, message_ids: list[int], base: str) -> None:
    # Given 200 opens and 200 clicks of five messages, all at once
    opens = [path(settings, tokens.open_pixel_url(settings, message_ids[k % 5])) for k in range(CONCURRENT)]
    clicks = [path(settings, tokens.click_url(settings, message_ids[k % 5], f"https://shop.example/p/{k}"))
              for k in range(CONCURRENT)]
    # When they arrive together
    answers = fetch_all(base, opens + clicks)
    # Then each open got its pixel and each click its redirect …
    assert [a.status_code for a in answers] == [200] * CONCURRENT + [302] * CONCURRENT
    assert {a.headers["location"] for a in answers[CONCURRENT:]} == {
        f"https://shop.example/p/{k}" for k in range(CONCURRENT)}
    # … and every one is stored once, with its message's customer and its link
    with Session(engine) as s:
        customer_of = {m: c for m, c in s.execute(select(Message.id, Message.customer_id))}
    open_rows, click_rows = stored(engine, EventType.OPEN), stored(engine, EventType.CLICK)
    assert len(open_rows) == len(click_rows) == CONCURRENT
    assert all(customer == customer_of[message] for message, customer, _ in open_rows + click_rows)
    assert sorted(url or "" for _, _, url in click_rows) == sorted(f"https://shop.example/p/{k}"
                                                                 for k in range(CONCURRENT))


def test_when_the_database_fails_opens_are_a_503_and_none_is_answered_unstored(
        engine: Engine, settings: Settings, message_ids: list[int], base: str) -> None:
    opens = [path(settings, tokens.open_pixel_url(settings, message_ids[k % 5])) for k in range(50)]
    # Given the events table cannot be written (as when the database is out of reach)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE tracking_events RENAME TO tracking_events_away"))
    try:
        answers = fetch_all(base, opens)
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE tracking_events_away RENAME TO tracking_events"))
    # Then every open is a 503 the sender may retry, with a reason; nothing is stored
    assert {a.status_code for a in answers} == {503}
    assert answers[0].headers["retry-after"] == "5" and "database" in answers[0].text
    assert stored(engine, EventType.OPEN) == []
    # And once the database is back, the same server stores opens again
    again = fetch_all(base, opens[:10])
    assert {a.status_code for a in again} == {200}
    assert len(stored(engine, EventType.OPEN)) == 10


def test_a_click_that_cannot_be_stored_fails_alone_and_the_others_are_stored(
        engine: Engine, settings: Settings, message_ids: list[int], base: str) -> None:
    # Given 60 clicks at once, one of a link PostgreSQL cannot store (text with a NUL character)
    good = [path(settings, tokens.click_url(settings, message_ids[0], f"https://shop.example/p/{k}"))
            for k in range(60)]
    bad = path(settings, tokens.click_url(settings, message_ids[1], "https://shop.example/\x00"))
    answers = fetch_all(base, [*good[:30], bad, *good[30:]])
    # Then every good click is redirected and stored, whatever batch it shared with the bad one
    statuses = [a.status_code for a in answers]
    assert statuses[:30] + statuses[31:] == [302] * 60
    rows = stored(engine, EventType.CLICK)
    stored_urls = [url for _, _, url in rows]
    assert sorted(u for u in stored_urls if u != "https://shop.example/\x00") == sorted(
        f"https://shop.example/p/{k}" for k in range(60))
    # And the bad one is a success exactly when it was stored (SQLite stores it; PostgreSQL refuses: 503)
    bad_stored = "https://shop.example/\x00" in stored_urls
    assert statuses[30] == (302 if bad_stored else 503)
    assert bad_stored == (engine.dialect.name == "sqlite")


def test_serve_with_two_worker_processes_answers_and_stores_from_each(
        engine: Engine, settings: Settings, message_ids: list[int]) -> None:
    # Given `outreach serve --workers 2`, the real command, on the test's database
    port = free_port()
    env = {**os.environ, "OUTREACH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "OUTREACH_SECRET_KEY": "s3cret", "OUTREACH_PUBLIC_URL": settings.public_url}
    command = [str(Path(sys.executable).parent / "outreach"), "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", alive=lambda: server.poll() is None)
        # When 100 opens arrive at once (on connections the two processes share)
        opens = [path(settings, tokens.open_pixel_url(settings, message_ids[k % 5])) for k in range(100)]
        answers = fetch_all(f"http://127.0.0.1:{port}", opens)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # Then each is answered with the pixel and stored
    assert {a.status_code for a in answers} == {200}
    assert len(stored(engine, EventType.OPEN)) == 100


def test_orders_delivered_together_are_stored_together_and_a_refused_one_alone(
    engine: Engine, settings: Settings, message_ids: list[int], base: str
) -> None:
    """PostgreSQL writes orders arriving together in one transaction, each in
    its own savepoint; SQLite one transaction each. Either way: every order
    answered 200 is stored once with its items, and an order for an unknown
    customer is a 422 that stores nothing — and costs the others nothing."""
    import json

    from outreach.store.models import Order, OrderItem
    from outreach.webhooks.orders import signed_headers

    def body(n: int) -> bytes:
        customer = "nobody" if n % 10 == 7 else f"c{n % 5}"
        return json.dumps({"external_id": f"o{n}", "customer_id": customer, "ordered_at": "2026-05-01T10:00:00Z",
                           "amount": "10.00", "items": [{"sku": "A", "amount": "4.00"},
                                                        {"sku": "B", "amount": "6.00"}]}).encode()

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            return list(await asyncio.gather(*(
                http.post("/webhooks/orders", content=body(n), headers=signed_headers("shop", body(n), at=NOW))
                for n in range(100))))

    answers = asyncio.run(run())
    codes = {n: a.status_code for n, a in enumerate(answers)}
    assert {n for n, c in codes.items() if c == 422} == {n for n in range(100) if n % 10 == 7}
    assert all(c == 200 for n, c in codes.items() if n % 10 != 7), codes
    assert all("nobody" in answers[n].text for n in range(100) if n % 10 == 7)
    with Session(engine) as s:
        orders = set(s.scalars(select(Order.external_id)))
        items = s.scalar(select(text("count(*)")).select_from(OrderItem))
    assert orders == {f"o{n}" for n in range(100) if n % 10 != 7} and items == 2 * len(orders)

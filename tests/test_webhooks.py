"""The webhook server over real HTTP: what customers, mail clients, the shop
and Twilio send us, and what must (and must not) happen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import NOW, add_customer
from outreach.config import Settings, load_settings
from outreach.domain import Channel, ConsentStatus, EventType, MessageStatus
from outreach.sending import tokens
from outreach.store.engine import transaction
from outreach.store.models import ConsentRecord, Message, Order, Rule, Suppression, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.orders import order_signature
from outreach.webhooks.server import free_port, serve_in_thread
from outreach.webhooks.twilio import twilio_signature

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
ARRIVAL = NOW + timedelta(hours=2)


@pytest.fixture
def settings() -> Settings:
    return load_settings(public_url=f"http://127.0.0.1:{free_port()}", secret_key="s3cret",
                         order_webhook_secret="shop-secret", twilio_auth_token="twilio-token")


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings, engine, clock=lambda: ARRIVAL)
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base) as http:
        yield http


@pytest.fixture
def sent(engine: Engine) -> dict[str, int]:
    """Ada got an email and Wang an SMS; both had consent."""
    with transaction(engine) as s:
        rule = Rule(name="winback", path="rules/winback.yaml", definition={}, checksum="x", updated_at=NOW)
        s.add(rule)
        s.flush()
        ada = add_customer(s, "ada", email="ada@example.com", phone=None, consent={"email": "granted"})
        wang = add_customer(s, "wang", name="王小明", locale="zh_CN", email=None, phone="+8613800000001",
                            consent={"sms": "granted"})
        ids = {}
        for customer, channel, address, provider in ((ada, Channel.EMAIL, "ada@example.com", "<m1@x>"),
                                                     (wang, Channel.SMS, "+8613800000001",
                                                      "SM5b1b5cf4c8a34f9a9a4b3b4c5d6e7f80")):
            m = Message(rule_id=rule.id, customer_id=customer.id, channel=channel, occurrence_key="k",
                        status=MessageStatus.SENT, to_address=address, planned_at=NOW, sent_at=NOW,
                        attempts=1, provider_id=provider)
            s.add(m)
            s.flush()
            ids[customer.external_id] = m.id
    return ids


def count(engine: Engine, model: type, *where: object) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def latest_consent(engine: Engine, ext: str, channel: Channel) -> ConsentStatus:
    from outreach.store.models import Customer

    with Session(engine) as s:
        return s.scalar(select(ConsentRecord.status).join(Customer, Customer.id == ConsentRecord.customer_id)
                        .where(Customer.external_id == ext, ConsentRecord.channel == channel)
                        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc()).limit(1))


# ------------------------------------------------------------------ unsubscribe
def test_unsubscribe_page_asks_and_one_click_post_unsubscribes_once(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    path = tokens.unsubscribe_url(settings, sent["ada"]).removeprefix(settings.public_url)
    # Given a mail scanner or the customer opens the link: a question, nothing changes
    page = client.get(path)
    assert page.status_code == 200 and "ada@example.com" in page.text and "<form" in page.text
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.GRANTED
    # When the mail client sends RFC 8058's one-click POST
    done = client.post(path, content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    # Then consent is revoked at once (history kept), the address suppressed, one event stored
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.REVOKED
    assert count(engine, ConsentRecord, ConsentRecord.channel == Channel.EMAIL) == 2
    assert count(engine, Suppression, Suppression.address == "ada@example.com") == 1
    # And a second click changes nothing more
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.UNSUBSCRIBE) == 1
    assert count(engine, ConsentRecord, ConsentRecord.channel == Channel.EMAIL) == 2


def test_unsubscribe_page_speaks_the_customers_language(
    settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    path = tokens.unsubscribe_url(settings, sent["wang"]).removeprefix(settings.public_url)
    assert "退订" in client.get(path).text


@pytest.mark.parametrize("kind", ["u", "c"])
def test_tampered_tokens_are_rejected_and_store_nothing(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int], kind: str
) -> None:
    real = (tokens.unsubscribe_url(settings, sent["ada"]) if kind == "u"
            else tokens.click_url(settings, sent["ada"], "https://shop.example/a"))
    token = real.rsplit("/", 1)[1]
    forged = tokens.click_url(load_settings(secret_key="attacker", public_url=settings.public_url),
                              sent["ada"], "https://evil.example").rsplit("/", 1)[1]
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged, "garbage"):
        response = client.post(f"/u/{bad}") if kind == "u" else client.get(f"/c/{bad}", follow_redirects=False)
        assert response.status_code == 400
        assert "location" not in response.headers
    assert count(engine, TrackingEvent) == 0
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.GRANTED


# ------------------------------------------------------------------ opens and clicks
def test_click_redirects_to_exactly_the_signed_link_and_is_recorded(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    url = "https://shop.jadeleaf.example/welcome-back?c=ada&utm=email"
    response = client.get(tokens.click_url(settings, sent["ada"], url).removeprefix(settings.public_url),
                          follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == url
    with Session(engine) as s:
        event = s.scalar(select(TrackingEvent))
        assert (event.type, event.message_id, event.url, event.occurred_at) == (
            EventType.CLICK, sent["ada"], url, ARRIVAL)


def test_open_pixel_is_a_gif_and_records_only_valid_tokens(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    good = client.get(tokens.open_pixel_url(settings, sent["ada"]).removeprefix(settings.public_url))
    bad = client.get("/o/not-a-token.gif")
    for response in (good, bad):
        assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
        assert response.content.startswith(b"GIF89a") and "no-store" in response.headers["cache-control"]
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.OPEN) == 1


# ------------------------------------------------------------------ orders
def post_order(client: httpx.Client, body: bytes, secret: str = "shop-secret") -> httpx.Response:
    return client.post("/webhooks/orders", content=body,
                       headers={"X-Outreach-Signature": order_signature(secret, body),
                                "Content-Type": "application/json"})


def test_signed_order_is_recorded_once_even_when_delivered_twice(
    engine: Engine, client: httpx.Client, sent: dict[str, int]
) -> None:
    body = (FIXTURES / "order.json").read_bytes()
    first, again = post_order(client, body), post_order(client, body)
    assert first.status_code == again.status_code == 200
    assert first.json()["external_id"] == "SHOP-100234"
    with Session(engine) as s:
        order = s.scalar(select(Order))
        assert order.ordered_at == datetime(2026, 6, 3, 6, 25)  # +08:00 stored as UTC
        assert (str(order.amount), order.currency, len(order.items)) == ("187.00", "CNY", 2)
    assert count(engine, Order) == 1
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.ORDER) == 1


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "wrong-secret"])
def test_order_with_a_bad_signature_is_refused_and_stores_nothing(
    engine: Engine, client: httpx.Client, sent: dict[str, int], signature: str | None
) -> None:
    body = (FIXTURES / "order.json").read_bytes()
    headers = {"Content-Type": "application/json"}
    if signature == "wrong-secret":
        headers["X-Outreach-Signature"] = order_signature("not-the-secret", body)
    elif signature:
        headers["X-Outreach-Signature"] = signature
    response = client.post("/webhooks/orders", content=body, headers=headers)
    assert response.status_code == 401 and "X-Outreach-Signature" in response.json()["error"]
    assert count(engine, Order) == 0 and count(engine, TrackingEvent) == 0


def test_bad_order_payload_names_the_field(engine: Engine, client: httpx.Client, sent: dict[str, int]) -> None:
    order = json.loads((FIXTURES / "order.json").read_text())
    order["amount"] = "-5"
    order["items"][0]["quantity"] = 0
    response = post_order(client, json.dumps(order).encode())
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"amount", "items.0.quantity"}
    unknown = post_order(client, json.dumps({**json.loads((FIXTURES / "order.json").read_text()),
                                             "customer_id": "nobody"}).encode())
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "customer_id"
    assert post_order(client, b"{not json").status_code == 422
    assert count(engine, Order) == 0


# ------------------------------------------------------------------ Twilio
def twilio_post(client: httpx.Client, settings: Settings, path: str, params: dict[str, str],
                token: str = "twilio-token") -> httpx.Response:
    signature = twilio_signature(token, settings.public_url + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


@pytest.mark.parametrize("body", ["STOP", " stop ", "退订", "TD"])
def test_stop_reply_revokes_sms_consent_and_suppresses_the_number(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int], body: str
) -> None:
    params = dict(parse_qsl((FIXTURES / "twilio_inbound_stop.form").read_text().strip()))
    params["Body"] = body
    response = twilio_post(client, settings, "/webhooks/twilio/inbound", params)
    assert response.status_code == 200 and response.text == "<Response></Response>"
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.REVOKED
    assert count(engine, Suppression, Suppression.address == "+8613800000001") == 1
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.STOP) == 1


def test_other_replies_are_recorded_as_replies(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    params = dict(parse_qsl((FIXTURES / "twilio_inbound_stop.form").read_text().strip()))
    params["Body"] = "Do you ship to Hangzhou?"
    assert twilio_post(client, settings, "/webhooks/twilio/inbound", params).status_code == 200
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.REPLY) == 1
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED


def test_twilio_request_with_a_bad_signature_is_refused(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    params = dict(parse_qsl((FIXTURES / "twilio_inbound_stop.form").read_text().strip()))
    response = twilio_post(client, settings, "/webhooks/twilio/inbound", params, token="guess")
    assert response.status_code == 403
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED
    assert count(engine, TrackingEvent) == 0 and count(engine, Suppression) == 0


@pytest.mark.parametrize("status,expected", [("delivered", EventType.DELIVERED), ("failed", EventType.FAILED),
                                             ("undelivered", EventType.BOUNCE), ("canceled", EventType.UNKNOWN)])
def test_status_callbacks_are_normalized_and_matched_to_the_message(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int], status: str,
    expected: EventType,
) -> None:
    params = dict(parse_qsl((FIXTURES / "twilio_status_delivered.form").read_text().strip()))
    params["MessageStatus"] = params["SmsStatus"] = status
    for _ in range(2):  # Twilio retries: stored once
        assert twilio_post(client, settings, "/webhooks/twilio/status", params).status_code == 204
    with Session(engine) as s:
        events = s.scalars(select(TrackingEvent)).all()
        assert [(e.type, e.message_id) for e in events] == [(expected, sent["wang"])]


def test_health(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"ok": True}


# ------------------------------------------------------------------ metrics
def scrape(http: httpx.Client, url: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample Prometheus would read: (name, labels) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = http.get(url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_metrics_count_requests_by_route_and_show_the_outbox_depth(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    # Given one message still waiting in the outbox
    with transaction(engine) as s:
        s.get(Message, sent["wang"]).status = MessageStatus.QUEUED
    opens = (("route", "/o/{token}"), ("status", "200"))
    before = scrape(client).get(("outreach_webhook_requests_total", opens), 0.0)
    # When the open pixel is fetched twice
    pixel = tokens.open_pixel_url(settings, sent["ada"]).removeprefix(settings.public_url)
    client.get(pixel)
    client.get(pixel)
    # Then /metrics counts them under the route's pattern (never the token), and shows the outbox's depth
    after = scrape(client)
    assert after[("outreach_webhook_requests_total", opens)] == before + 2
    assert not any(pixel.split("/")[-1].split(".")[0] in str(labels) for _, labels in after)
    assert after[("outreach_outbox_messages", (("status", "queued"),))] == 1
    assert after[("outreach_outbox_messages", (("status", "planned"),))] == 0

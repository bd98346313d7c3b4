"""The webhook server over real HTTP: what customers, mail clients, the shop
and Twilio send us, and what must (and must not) happen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
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
from outreach.webhooks.orders import signed_headers
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


def test_safe_methods_never_unsubscribe_open_or_click(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    # Given the links of a sent email
    unsubscribe = tokens.unsubscribe_url(settings, sent["ada"]).removeprefix(settings.public_url)
    pixel = tokens.open_pixel_url(settings, sent["ada"]).removeprefix(settings.public_url)
    click = tokens.click_url(settings, sent["ada"], "https://shop.example/a").removeprefix(settings.public_url)
    # When a mail scanner prefetches them with HEAD, and probes them with OPTIONS
    for path in (unsubscribe, pixel, click):
        assert client.head(path).status_code in (200, 302)
        assert client.request("OPTIONS", path).status_code == 405
    # Then nothing changed: still subscribed, no suppression, no event
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.GRANTED
    assert count(engine, Suppression) == 0
    assert count(engine, TrackingEvent) == 0


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
def post_order(client: httpx.Client, body: bytes, secret: str = "shop-secret", *,
               at: datetime = ARRIVAL) -> httpx.Response:
    """A delivery signed at ``at`` (the server's clock says ARRIVAL)."""
    return client.post("/webhooks/orders", content=body, headers=signed_headers(secret, body, at=at))


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
    headers = signed_headers("shop-secret", body, at=ARRIVAL)
    if signature == "wrong-secret":
        headers = signed_headers("not-the-secret", body, at=ARRIVAL)
    elif signature:
        headers["X-Outreach-Signature"] = signature
    else:
        del headers["X-Outreach-Signature"]
    response = client.post("/webhooks/orders", content=body, headers=headers)
    assert response.status_code == 401 and "X-Outreach-Signature" in response.json()["error"]
    assert count(engine, Order) == 0 and count(engine, TrackingEvent) == 0


def test_a_replayed_or_older_order_delivery_changes_nothing(
    engine: Engine, client: httpx.Client, sent: dict[str, int]
) -> None:
    body = (FIXTURES / "order.json").read_bytes()
    # A delivery without a timestamp, or signed ten minutes ago (a replay), is refused
    no_stamp = signed_headers("shop-secret", body, at=ARRIVAL)
    del no_stamp["X-Outreach-Timestamp"]
    assert client.post("/webhooks/orders", content=body, headers=no_stamp).status_code == 401
    stale = post_order(client, body, at=ARRIVAL - timedelta(minutes=10))
    assert stale.status_code == 401 and "replayed" in stale.json()["error"]
    # A timestamp changed after signing breaks the signature
    moved = signed_headers("shop-secret", body, at=ARRIVAL - timedelta(minutes=10))
    moved["X-Outreach-Timestamp"] = str(int(ARRIVAL.replace(tzinfo=UTC).timestamp()))
    assert client.post("/webhooks/orders", content=body, headers=moved).status_code == 401
    assert count(engine, Order) == 0
    # Given the order, then its update (an item refunded, signed a minute later)
    assert post_order(client, body, at=ARRIVAL - timedelta(minutes=2)).status_code == 200
    update = json.loads(body)
    update["amount"], update["items"] = "136.00", update["items"][:1]
    assert post_order(client, json.dumps(update).encode(), at=ARRIVAL - timedelta(minutes=1)).status_code == 200
    # When the first body is delivered again (a retry, or someone who kept it)
    again = post_order(client, body, at=ARRIVAL - timedelta(minutes=2))
    # Then it is acknowledged and changes nothing: the update stays
    assert again.status_code == 200 and "unchanged" in again.json()
    with Session(engine) as s:
        order = s.scalar(select(Order))
        assert (str(order.amount), [i.sku for i in order.items]) == ("136.00", ["LJ-100"])


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
                token: str = "twilio-token", signed_path: str | None = None) -> httpx.Response:
    signature = twilio_signature(token, settings.public_url + (signed_path or path), params)
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


def stop_form(**changes: str) -> dict[str, str]:
    params = dict(parse_qsl((FIXTURES / "twilio_inbound_stop.form").read_text().strip()))
    return {**params, **changes}


def test_twilio_signs_the_full_url_query_string_included(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    path = "/webhooks/twilio/inbound?shop=jadeleaf"
    # Given a webhook URL configured with a query string: a signature over the URL without it is refused
    assert twilio_post(client, settings, path, stop_form(), signed_path="/webhooks/twilio/inbound").status_code == 403
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED
    # When Twilio signs the full URL, as it does, the STOP is taken
    assert twilio_post(client, settings, path, stop_form()).status_code == 200
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.REVOKED


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_start_after_stop_opts_back_in_with_the_reply_as_evidence(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int], word: str
) -> None:
    # Given a customer who replied STOP
    assert twilio_post(client, settings, "/webhooks/twilio/inbound", stop_form()).status_code == 200
    assert count(engine, Suppression, Suppression.address == "+8613800000001") == 1
    # When they reply START (or UNSTOP, YES) later
    again = stop_form(Body=word, MessageSid="SM" + "2" * 32, SmsMessageSid="SM" + "2" * 32, SmsSid="SM" + "2" * 32)
    assert twilio_post(client, settings, "/webhooks/twilio/inbound", again).status_code == 200
    # Then SMS consent is granted again, with the reply as evidence, and the number is no longer suppressed
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED
    with Session(engine) as s:
        evidence = s.scalar(select(ConsentRecord.evidence).order_by(ConsentRecord.id.desc()).limit(1))
    assert f"'{word}'" in evidence and "+8613800000001" in evidence
    assert count(engine, Suppression) == 0


def test_help_is_answered_in_the_customers_language(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    response = twilio_post(client, settings, "/webhooks/twilio/inbound", stop_form(Body="help"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert "<Message>" in response.text and "TD" in response.text and "START" in response.text
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED


def test_signed_twilio_posts_without_their_key_fields_are_refused(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    # A STOP without a sender, a status without a message id: 400, nothing stored
    no_sender = {k: v for k, v in stop_form().items() if k != "From"}
    response = twilio_post(client, settings, "/webhooks/twilio/inbound", no_sender)
    assert response.status_code == 400 and "From" in response.text
    status = dict(parse_qsl((FIXTURES / "twilio_status_delivered.form").read_text().strip()))
    no_sid = {k: v for k, v in status.items() if k not in ("MessageSid", "SmsSid")}
    response = twilio_post(client, settings, "/webhooks/twilio/status", no_sid)
    assert response.status_code == 400 and "MessageSid" in response.text
    assert count(engine, Suppression) == 0 and count(engine, TrackingEvent) == 0


def test_error_21610_in_a_status_callback_is_an_opt_out(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    status = dict(parse_qsl((FIXTURES / "twilio_status_delivered.form").read_text().strip()))
    status.update(MessageStatus="undelivered", SmsStatus="undelivered", ErrorCode="21610")
    assert twilio_post(client, settings, "/webhooks/twilio/status", status).status_code == 204
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.REVOKED
    assert count(engine, Suppression, Suppression.address == "+8613800000001") == 1


def test_twilio_without_an_auth_token_is_a_startup_error(engine: Engine) -> None:
    from outreach.errors import ConfigError

    with pytest.raises(ConfigError, match="OUTREACH_TWILIO_AUTH_TOKEN"):
        create_app(load_settings(secret_key="s", sms_transport="twilio", twilio_from="+14155550100"), engine)
    # Without Twilio at all, its routes do not exist (no per-request 500)
    app = create_app(load_settings(secret_key="s"), engine)
    assert not any(getattr(route, "path", "").startswith("/webhooks/twilio") for route in app.routes)


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


# ------------------------------------------------------------------ the secret
PUBLISHED_DEV_SECRET = "outreach-embedded-development-secret"  # what earlier versions signed with


def test_an_embedded_installation_signs_with_a_secret_of_its_own(tmp_path: Path) -> None:
    # Given two embedded installations with no secret configured
    first = load_settings(database_url=f"sqlite:///{tmp_path / 'a' / 'outreach.db'}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    again = load_settings(database_url=f"sqlite:///{tmp_path / 'a' / 'outreach.db'}")
    other = load_settings(database_url=f"sqlite:///{tmp_path / 'b' / 'outreach.db'}")
    # Then each signs with a random secret kept beside its database, for its owner only
    secret = first.require_secret()
    assert len(secret) >= 32 and secret != PUBLISHED_DEV_SECRET
    kept = tmp_path / "a" / "outreach.db.secret"
    assert kept.read_text().strip() == secret and kept.stat().st_mode & 0o777 == 0o600
    # And every process of the installation agrees on it; another installation has another
    assert again.require_secret() == secret
    assert other.require_secret() not in (secret, PUBLISHED_DEV_SECRET)


def test_links_forged_with_the_published_secret_do_nothing(engine: Engine, tmp_path: Path,
                                                           sent: dict[str, int]) -> None:
    # Given an embedded webhook server started without OUTREACH_SECRET_KEY
    port = free_port()
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
                             public_url=f"http://127.0.0.1:{port}")
    forger = load_settings(secret_key=PUBLISHED_DEV_SECRET, public_url=settings.public_url)
    with serve_in_thread(create_app(settings, engine, clock=lambda: ARRIVAL), port=port) as base, \
            httpx.Client(base_url=base) as http:
        # When a stranger signs an unsubscribe, an order and a redirect with the secret in the source
        unsubscribe = http.post(tokens.unsubscribe_url(forger, sent["ada"]).removeprefix(base))
        redirect = http.get(tokens.click_url(forger, sent["ada"], "https://evil.example").removeprefix(base),
                            follow_redirects=False)
        body = json.dumps({"external_id": "forged", "customer_id": "ada", "ordered_at": ARRIVAL.isoformat(),
                           "amount": "1.00", "items": []}).encode()
        order = post_order(http, body, secret=PUBLISHED_DEV_SECRET)
        # And the real links still work
        real = http.get(tokens.click_url(settings, sent["ada"], "https://shop.example/").removeprefix(base),
                        follow_redirects=False)
    # Then all three are refused and nothing is stored
    assert (unsubscribe.status_code, redirect.status_code, order.status_code) == (400, 400, 401)
    assert "location" not in redirect.headers
    assert latest_consent(engine, "ada", Channel.EMAIL) is ConsentStatus.GRANTED
    assert count(engine, Order, Order.external_id == "forged") == 0
    assert real.status_code == 302


# ------------------------------------------------------------------ hostile orders
def _order(**changes: Any) -> dict[str, Any]:
    return {**json.loads((FIXTURES / "order.json").read_text()), **changes}


def test_the_same_orders_delivered_twice_at_once_are_stored_once_each(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Given 20 orders of 2 items, each delivered twice at the same moment
    bodies = [json.dumps(_order(external_id=f"SHOP-{i}")).encode() for i in range(20)]
    base = str(client.base_url)

    def deliver(body: bytes) -> int:
        with httpx.Client(base_url=base) as http:
            return post_order(http, body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(deliver, [b for body in bodies for b in (body, body)]))
    # Then every delivery is answered 200, and each order is stored once with its 2 items
    assert codes == [200] * 40
    with Session(engine) as s:
        assert sorted(len(o.items) for o in s.scalars(select(Order))) == [2] * 20
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.ORDER) == 20


@pytest.mark.parametrize("name, body", [
    ("year 9999", json.dumps(_order(ordered_at="9999-12-31T23:59:59-05:00")).encode()),
    ("year 1900", json.dumps(_order(ordered_at="1900-01-01T00:00:00Z")).encode()),
    ("NUL in a SKU", json.dumps(_order(items=[{"sku": "LJ\u0000100"}])).encode()),
    ("2**70 items of one SKU", json.dumps(_order(items=[{"sku": "LJ-100", "quantity": 2 ** 70}])).encode()),
    ("an amount beyond the schema", json.dumps(_order(amount="1e20")).encode()),
    ("a tenth of a cent", json.dumps(_order(amount="10.001")).encode()),
    ("NaN", json.dumps(_order(amount="NaN")).encode()),
    ("invalid UTF-8", b'{"external_id": "\xff\xfe", "customer_id": "ada"}'),
    ("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
    ("1,001 items", json.dumps(_order(items=[{"sku": f"S{i}"} for i in range(1001)])).encode()),
])
def test_hostile_order_values_are_a_4xx_with_a_reason_and_store_nothing(
    engine: Engine, client: httpx.Client, sent: dict[str, int], name: str, body: bytes
) -> None:
    response = post_order(client, body)
    assert response.status_code == 422, (name, response.text)
    assert response.json()["errors"][0]["message"]
    assert count(engine, Order) == 0


def test_an_oversized_body_is_refused_before_it_is_read(
    engine: Engine, client: httpx.Client, sent: dict[str, int]
) -> None:
    # An unauthenticated 20 MB body: refused (413) without a signature check
    response = client.post("/webhooks/orders", content=b"x" * (20 << 20), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "longer than" in response.json()["error"]
    assert count(engine, Order) == 0

"""The events API over real HTTP: a shop reports a cart abandoned, the
cart-abandoned rule sends at the next run with the cart in the email; what a
hostile or broken sender posts is a 4xx with a reason and stores nothing."""

from __future__ import annotations

import email
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import add_customer
from outreach.config import Settings, load_settings
from outreach.store.engine import transaction
from outreach.store.models import CustomEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.events import MAX_EVENTS
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import free_port, serve_in_thread
from test_campaign_control import REPO, cli
from test_webhooks import ARRIVAL

SECRET = "shop-secret"
CART = {"cart_url": "https://shop.example/cart/abc123", "item_count": 3, "cart_value": "129.00", "currency": "CNY",
        "items": [{"sku": "LJ-100", "name": "Longjing 100 g"}]}


@pytest.fixture
def settings() -> Settings:
    return load_settings(public_url=f"http://127.0.0.1:{free_port()}", secret_key="test-secret",
                         order_webhook_secret=SECRET)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[httpx.Client]:
    with transaction(engine) as s:
        add_customer(s, "ada", email="ada@example.com", consent={"email": "granted"})
        add_customer(s, "bo", email="bo@example.com", consent={"email": "granted"})
    app = create_app(settings, engine, clock=lambda: ARRIVAL)
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base) as http:
        yield http


def post(client: httpx.Client, payload: Any, *, raw: bytes | None = None, secret: str = SECRET,
         at: Any = ARRIVAL) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    return client.post("/webhooks/events", content=body, headers=signed_headers(secret, body, at=at))


def cart(ext: str = "ada", event_id: str = "evt-1", **changes: Any) -> dict[str, Any]:
    return {"id": event_id, "customer_id": ext, "name": "cart_abandoned",
            "occurred_at": (ARRIVAL - timedelta(hours=2)).isoformat() + "Z", "properties": CART, **changes}


def stored(engine: Engine) -> list[CustomEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(CustomEvent).order_by(CustomEvent.id)))


def test_a_signed_event_is_stored_once_with_its_properties(engine: Engine, client: httpx.Client) -> None:
    # Given the shop reports an abandoned cart
    first = post(client, cart())
    assert first.status_code == 200, first.text
    [row] = stored(engine)
    assert (row.name, row.properties, row.occurred_at) == ("cart_abandoned", CART, ARRIVAL - timedelta(hours=2))
    assert first.json() == {"stored": [{"id": "evt-1", "event_id": row.id}]}
    # When it retries the delivery, and then sends a corrected version
    assert post(client, cart()).status_code == 200
    assert post(client, cart(properties={**CART, "item_count": 4})).status_code == 200
    # Then there is still one event, the latest version
    [row] = stored(engine)
    assert row.properties["item_count"] == 4
    # And an event without a time is dated when it arrived
    assert post(client, {"id": "evt-2", "customer_id": "bo", "name": "tasting.attended"}).status_code == 200
    assert stored(engine)[-1].occurred_at == ARRIVAL


def test_a_batch_is_stored_whole_or_not_at_all(engine: Engine, client: httpx.Client) -> None:
    bad = post(client, [cart(), cart("nobody", "evt-2")])
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "1.customer_id" and "nobody" in bad.json()["errors"][0]["message"]
    assert stored(engine) == []
    good = post(client, [cart(), cart("bo", "evt-2")])
    assert good.status_code == 200 and len(good.json()["stored"]) == 2 and len(stored(engine)) == 2


@pytest.mark.parametrize("name, body, status", [
    ("no signature", None, 401),
    ("signed by a stranger", "stranger", 401),
    ("signed an hour ago", "old", 401),
    ("not JSON", b"{not json", 422),
    ("not UTF-8", b'{"id": "\xff"}', 422),
    ("NaN", b'{"id": "e", "customer_id": "ada", "name": "x", "properties": {"v": NaN}}', 422),
    ("a number of 5,000 digits", b'{"id": "e", "customer_id": "ada", "name": "x", "properties": {"v": '
     + b"9" * 5000 + b"}}", 422),
    ("nested too deep", json.dumps(cart(properties={"a": [[[[[[[[[[1]]]]]]]]]]})).encode(), 422),
    ("JSON nested thousands deep", b'{"id": "e", "properties": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422),
    ("a NUL in a property", json.dumps(cart(properties={"note": "a\x00b"})).encode(), 422),
    ("a control character in a name", json.dumps(cart(properties={"a\nb": 1})).encode(), 422),
    ("a name with spaces", json.dumps(cart(name="cart abandoned")).encode(), 422),
    ("dated next year", json.dumps(cart(occurred_at="2027-12-01T00:00:00Z")).encode(), 422),
    ("dated year 9999", json.dumps(cart(occurred_at="9999-12-31T23:59:59+14:00")).encode(), 422),
    ("no id", json.dumps({k: v for k, v in cart().items() if k != "id"}).encode(), 422),
    ("an unknown field", json.dumps(cart(extra=1)).encode(), 422),
    ("properties not an object", json.dumps(cart(properties=[1, 2])).encode(), 422),
    ("too many events", json.dumps([cart(event_id=f"e{i}") for i in range(MAX_EVENTS + 1)]).encode(), 422),
    ("an empty batch", b"[]", 422),
    ("over 1 MiB", json.dumps(cart(properties={"blob": "x" * (1 << 20)})).encode(), 413),
])
def test_hostile_events_are_a_4xx_with_a_reason_and_store_nothing(
    engine: Engine, client: httpx.Client, name: str, body: Any, status: int
) -> None:
    if body is None:
        answer = client.post("/webhooks/events", content=json.dumps(cart()).encode())
    elif body == "stranger":
        answer = post(client, cart(), secret="guess")
    elif body == "old":
        answer = post(client, cart(), at=ARRIVAL - timedelta(hours=1))
    else:
        answer = post(client, None, raw=body)
    assert answer.status_code == status, answer.text
    assert answer.json().get("error") or answer.json()["errors"][0]["message"]
    assert stored(engine) == []


def email_text(path: Path) -> str:
    parsed = email.message_from_bytes(path.read_bytes())
    parts = [p for p in parsed.walk() if p.get_content_type() == "text/plain"]
    assert isinstance(parts[0], EmailMessage)
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_an_abandoned_cart_reported_over_http_is_emailed_at_the_next_run_with_its_cart(
    engine: Engine, db_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    # Given the shipped cart-abandoned rule (no holdout, so the one customer is not held out)
    (tmp_path / "rules").mkdir()
    shipped = (REPO / "rules" / "cart-abandoned.yaml").read_text()
    no_holdout = shipped.replace("holdout_percent: 10", "holdout_percent: 0")
    (tmp_path / "rules" / "cart-abandoned.yaml").write_text(no_holdout)
    # When the shop reports Ada's cart, left two hours ago, and the scheduler's next run comes
    assert post(client, cart()).status_code == 200
    done = cli(tmp_path, db_url, "run", "--now", ARRIVAL.isoformat() + "Z")
    assert done.returncode == 0, done.stderr
    # Then Ada gets one email that shows her cart
    [eml] = list((tmp_path / "outbox" / "email").glob("*.eml"))
    text = email_text(eml)
    assert "ada@example.com" in eml.read_text() and "3 item(s) worth 129.00" in text
    # And a second run sends nothing more
    assert cli(tmp_path, db_url, "run", "--now", (ARRIVAL + timedelta(minutes=5)).isoformat() + "Z").returncode == 0
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 1


def test_validate_reports_an_event_variable_in_a_rule_without_an_event(tmp_path: Path) -> None:
    # Given the cart template used by a rule that is not triggered by an event
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "name: r\ntrigger: {type: inactivity, days: 30}\ntemplate: cart-abandoned\nchannels: [email]\n")
    done = cli(tmp_path, "sqlite:///" + str(tmp_path / "o.db"), "rules", "validate", "--no-db", "rules")
    # Then validate says `event` is undefined there, with the file
    assert done.returncode != 0
    assert "event" in done.stdout + done.stderr and "email.mjml" in done.stdout + done.stderr
    # And the shipped rule, triggered by the event, is valid
    shutil.copy(REPO / "rules" / "cart-abandoned.yaml", tmp_path / "rules" / "r.yaml")
    ok = cli(tmp_path, "sqlite:///" + str(tmp_path / "o.db"), "rules", "validate", "--no-db", "rules")
    assert ok.returncode == 0, ok.stdout + ok.stderr


"""Fuzzing the webhook server from its own OpenAPI description (schemathesis):
whatever a sender posts — valid or not, signed or not — it never answers
5xx, on SQLite and PostgreSQL (an SES post whose certificate URL cannot be
fetched — there is no network here — is a 503 that SNS retries). Signed endpoints get correctly signed
deliveries for most cases, so the fuzzing reaches the parsing and storing
behind the signature check; links get valid tokens half of the time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, settings
from schemathesis.generation.case import Case
from sqlalchemy import Engine

from outreach.config import Settings, load_settings
from outreach.domain import Channel
from outreach.sending import tokens
from outreach.store import confirmations
from outreach.store.engine import transaction
from outreach.store.models import Message
from outreach.webhooks import openapi
from outreach.webhooks.app import create_app
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import free_port, serve_in_thread
from outreach.webhooks.twilio import twilio_signature
from test_webhooks import ARRIVAL, sent  # noqa: F401 - a fixture

#: Examples per endpoint and database: enough to find a 500, quick enough for CI.
EXAMPLES = 50
SHOP_SECRET, TWILIO_TOKEN, PUSH_SECRET = "shop-secret", "twilio-token", "fuzz-push-secret-0123456789"
SENDGRID_PUBLIC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
#: Only a 503 (the database or Amazon's certificate host unreachable: retry) may be a 5xx.
RETRY_LATER = 503

schema = schemathesis.openapi.from_dict(openapi.describe())


@pytest.fixture
def server(engine: Engine, sent: dict[str, int],  # noqa: F811
           tmp_path: Path) -> Iterator[tuple[httpx.Client, Settings, dict[str, int]]]:
    with transaction(engine) as session:  # a double opt-in link waiting to be confirmed (request 1)
        confirmations.request(session, customer_id=session.get_one(Message, sent["ada"]).customer_id,
                              channel=Channel.EMAIL, address="ada@example.com", message_id=sent["ada"], now=ARRIVAL)
    config = load_settings(public_url=f"http://127.0.0.1:{free_port()}", secret_key="s3cret",
                           outbox_dir=tmp_path / "outbox",
                           order_webhook_secret=SHOP_SECRET, twilio_auth_token=TWILIO_TOKEN,
                           ses_topic_arns=["arn:aws:sns:us-east-1:123456789012:outreach"],
                           sendgrid_webhook_public_key=SENDGRID_PUBLIC_KEY, mailgun_webhook_signing_key="mg-key",
                           postmark_webhook_password="pm-pass", aliyun_webhook_secret=PUSH_SECRET,
                           tencent_webhook_secret=PUSH_SECRET)
    app = create_app(config, engine, clock=lambda: ARRIVAL)
    port = int(config.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base, timeout=30) as http:
        yield http, config, sent


def request_for(case: Case, config: Settings, messages: dict[str, int]) -> httpx.Request:
    """The case as an HTTP request, signed the way its sender would sign it."""
    path = case.formatted_path
    token = (case.path_parameters or {}).get("token")
    if token is not None and len(str(token)) % 2 == 0:  # half the cases: a valid link of a real message
        message_id = messages["ada"]
        valid = {"/u/": tokens.unsubscribe_url(config, message_id), "/o/": tokens.open_pixel_url(config, message_id),
                 "/c/": tokens.click_url(config, message_id, "https://shop.example/p?x=1"),
                 "/s/": tokens.survey_url(config, message_id, len(str(token)) % 12),
                 "/p/": tokens.preferences_url(config, message_id), "/r/": tokens.confirm_url(config, 1)}
        path = valid[path[:3]].removeprefix(config.public_url) + (
            "/resubscribe" if path.endswith("/resubscribe") else "")
    secret = (case.path_parameters or {}).get("secret")
    if secret is not None and len(str(secret)) % 4:  # most cases: the right push secret, reaching the parsers
        path = case.path.replace("{secret}", PUSH_SECRET)
    headers = {k: str(v) for k, v in (case.headers or {}).items()}
    content = b""
    if isinstance(case.body, bytes):  # a negative case: raw bytes
        content = case.body
        headers["Content-Type"] = case.media_type or "application/octet-stream"
    elif case.media_type == "application/json" and case.body is not None:
        content = json.dumps(case.body, default=lambda o: o.decode("latin-1")).encode()
        if len(str(case.body)) % 5:  # most cases signed correctly: the fuzzing reaches the parser and the store
            headers.update(signed_headers(SHOP_SECRET, content, at=ARRIVAL))
        headers["Content-Type"] = "application/json"
    elif case.media_type == "application/x-www-form-urlencoded" and isinstance(case.body, dict):
        form = {str(k): str(v) for k, v in case.body.items()}
        if path.startswith("/p/") and len(form) % 2:  # half the preference forms carry the page's nonce
            form["nonce"] = tokens.form_nonce(config, messages["ada"], now=ARRIVAL)
        content = urlencode(form).encode()
        headers["Content-Type"] = case.media_type
        if len(form) % 4:
            headers["X-Twilio-Signature"] = twilio_signature(TWILIO_TOKEN, config.public_url + path, form)
    return httpx.Request(case.method, path, params=case.query or None, headers=headers, content=content)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_request_is_answered_with_a_server_error(
    case: Case, server: tuple[httpx.Client, Settings, dict[str, int]]
) -> None:
    http, config, sent_ids = server
    request = request_for(case, config, sent_ids)
    response = http.send(http.build_request(request.method, request.url, headers=request.headers,
                                            content=request.content))
    retry_later = response.status_code == RETRY_LATER and case.formatted_path == "/webhooks/esp/ses"
    assert response.status_code < 500 or retry_later, (case.method, case.formatted_path, case.body, response.text[:500])


def test_the_served_description_is_the_documented_one(
    server: tuple[httpx.Client, Settings, dict[str, int]]
) -> None:
    http, _, _ = server
    documented = json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text())
    assert http.get("/openapi.json").json() == documented == openapi.describe(), \
        "docs/openapi.json is stale: python -m outreach.webhooks.openapi > docs/openapi.json"


def test_a_signed_twilio_post_with_a_nul_is_a_400_not_a_500(
    server: tuple[httpx.Client, Settings, dict[str, int]]
) -> None:
    # Found by the fuzzing above: PostgreSQL refuses NUL in text, which was a 500
    http, config, _ = server
    for path in ("/webhooks/twilio/inbound", "/webhooks/twilio/status"):
        form = {"From": "+86138\x000000001", "Body": "STOP", "MessageSid": "SM\x00x", "MessageStatus": "delivered"}
        signature = twilio_signature(TWILIO_TOKEN, config.public_url + path, form)
        answer = http.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 400 and "NUL" in answer.text

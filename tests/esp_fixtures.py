"""The ESP feed tests' fixtures (a pytest plugin: ``pytest_plugins =
["esp_fixtures"]``): our webhook server with every feed configured, a local
stand-in for Amazon's certificate server, and Ada who got message #id by SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from esp_helpers import amazon_server
from esp_shop import ADA, ARRIVAL, MAILGUN_KEY, POSTMARK_PASSWORD, SENDGRID, TOPIC
from factories import NOW, add_customer
from outreach.config import Settings, load_settings
from outreach.domain import Channel, MessageStatus
from outreach.store.engine import transaction
from outreach.store.models import Message, Rule
from outreach.webhooks.app import create_app
from outreach.webhooks.server import serve_in_thread


@pytest.fixture
def amazon() -> Iterator[Any]:
    with amazon_server() as server:
        yield server


@pytest.fixture
def settings(amazon: Any) -> Settings:
    return load_settings(secret_key="s3cret", ses_topic_arns=[TOPIC],
                         sns_url_pattern=rf"^{amazon.base.replace('.', '[.]')}/",
                         sendgrid_webhook_public_key=SENDGRID.public, mailgun_webhook_signing_key=MAILGUN_KEY,
                         postmark_webhook_password=POSTMARK_PASSWORD)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(settings, engine, clock=lambda: ARRIVAL)) as base, \
            httpx.Client(base_url=base) as http:
        yield http


@pytest.fixture
def sent(engine: Engine) -> dict[str, Any]:
    """Ada (email consent) got message #id by SMTP; its Message-ID is our provider id."""
    with transaction(engine) as s:
        rule = Rule(name="winback", path="rules/winback.yaml", definition={}, checksum="x", updated_at=NOW)
        s.add(rule)
        s.flush()
        ada = add_customer(s, "ada", email=ADA, consent={"email": "granted"})
        m = Message(rule_id=rule.id, customer_id=ada.id, channel=Channel.EMAIL, occurrence_key="k",
                    status=MessageStatus.SENT, to_address=ADA, planned_at=NOW, sent_at=NOW, attempts=1)
        s.add(m)
        s.flush()
        m.provider_id = f"<outreach-msg-{m.id}@outreach.example>"
        return {"id": m.id, "message_id": m.provider_id, "customer": ada.id}

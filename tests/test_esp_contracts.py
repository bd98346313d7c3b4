"""Contract tests: each provider's documented sample payload
(tests/fixtures/esp/, sources in its README), signed with the tests' own keys
as the provider signs it, posted over real HTTP to our feed, on SQLite and
PostgreSQL. Each must become the right normalized event, for our message to
Ada, at the documented time, with the provider's JSON kept — and a hard
bounce, a complaint or an unsubscribe must stop mail to Ada.

Only what ties an event to our data is changed: the recipient becomes Ada,
and our message id goes where the provider echoes it (the Message-ID header,
SES tags, SendGrid custom args, Mailgun user variables, Postmark metadata)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from esp_helpers import fixture, mailgun_signed
from esp_shop import ADA, ARRIVAL, MAILGUN_KEY, SENDGRID, consent, postmark_post, stored, suppressed
from outreach.channels import backend_for
from outreach.channels.base import Envelope
from outreach.config import load_settings
from outreach.domain import ConsentStatus, EventType
from smtp_server import smtp_server

#: The shop's fixtures: amazon, settings, client, sent.
pytest_plugins = ["esp_fixtures"]

B, S, C, U = EventType.BOUNCE, EventType.SOFT_BOUNCE, EventType.COMPLAINT, EventType.UNSUBSCRIBE
#: What each event must do to Ada: (suppression reason, email consent afterwards).
EFFECTS = {B: ("hard bounce", ConsentStatus.GRANTED), C: ("complaint", ConsentStatus.REVOKED),
           U: ("unsubscribed", ConsentStatus.REVOKED)}


def at(text: str) -> datetime:
    """A documented time as we store it: naive UTC."""
    return datetime.fromisoformat(text)


def assert_mapped(engine: Engine, sent: dict[str, Any], answer: httpx.Response, kind: EventType | None,
                  when: str | None, payload: Any, url: str | None = None) -> None:
    assert answer.status_code == 200, answer.text
    rows = stored(engine)
    if kind is None:  # an intermediate report: acknowledged, not stored
        assert rows == [] and answer.json()["events"] == 0
        return
    assert [(t, m) for t, m, *_ in rows] == [(kind, sent["id"])]
    _, _, occurred_at, stored_url, kept = rows[0]
    assert occurred_at == (at(when) if when else ARRIVAL)
    assert kept == payload and stored_url == url
    reason, status = EFFECTS.get(kind, (None, ConsentStatus.GRANTED))
    assert suppressed(engine) == reason
    assert consent(engine, sent["customer"]) is status


# ------------------------------------------------------------------- Amazon SES
SES = [  # sample, the documented recipient, type, time
    ("bounce", "jane@example.com", B, "2016-01-27T14:59:38.237"),
    ("complaint", "richard@example.com", C, "2016-01-27T14:59:38.237"),
    ("delivery", "jane@example.com", EventType.DELIVERED, "2016-01-27T14:59:38.237"),
    ("event_bounce", "recipient@example.com", B, "2017-08-05T00:41:02.669"),
    ("event_send", "recipient@example.com", None, None),
    ("event_reject", "sender@example.com", EventType.FAILED, "2016-10-14T17:38:15.211"),
    ("event_open", "recipient@example.com", EventType.OPEN, "2017-08-09T22:00:19.652"),
    ("event_click", "recipient@example.com", EventType.CLICK, "2017-08-09T23:51:25.570"),
    ("event_rendering_failure", "recipient@example.com", EventType.FAILED, "2018-01-22T18:43:06.197"),
    ("event_delivery_delay", "recipient@example.com", EventType.DEFERRED, "2020-06-16T00:25:40.095"),
    ("event_subscription", "recipient@example.com", U, "2022-01-12T01:00:17.910"),
]


def ses_to_ada(event: dict[str, Any], documented: str, sent: dict[str, Any]) -> dict[str, Any]:
    """Ada for the documented recipient; our id as SES echoes it: the original
    Message-ID header (notifications), our tag (configuration-set events)."""
    mail = event["mail"]
    mail["destination"] = [ADA if d == documented else d for d in mail["destination"]]
    for detail in event.values():  # bouncedRecipients, complainedRecipients, delayedRecipients, recipients
        for listed in (v for v in (detail.values() if isinstance(detail, dict) else ()) if isinstance(v, list)):
            for i, recipient in enumerate(listed):
                if recipient == documented:
                    listed[i] = ADA
                elif isinstance(recipient, dict) and recipient.get("emailAddress") == documented:
                    recipient["emailAddress"] = ADA
    if "eventType" in event:
        mail["tags"]["outreach_message_id"] = [str(sent["id"])]
    else:
        for header in mail["headers"]:
            if header["name"] == "Message-ID":
                header["value"] = sent["message_id"]
    return event


def ses_post(client: httpx.Client, amazon: Any, event: dict[str, Any]) -> httpx.Response:
    signed = amazon.sign(fixture("sns/notification.json") | {"Message": json.dumps(event)})
    return client.post("/webhooks/esp/ses", content=json.dumps(signed),
                       headers={"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"})


@pytest.mark.parametrize(("name", "documented", "kind", "when"), SES, ids=[c[0] for c in SES])
def test_ses_documented_samples(engine: Engine, client: httpx.Client, amazon: Any, sent: dict[str, Any],
                                name: str, documented: str, kind: EventType | None, when: str | None) -> None:
    event = ses_to_ada(fixture(f"ses/{name}.json"), documented, sent)
    url = event.get("click", {}).get("link")
    assert_mapped(engine, sent, ses_post(client, amazon, event), kind, when, event, url)


def test_ses_identity_notification_finds_the_message_by_its_header_tag(
        engine: Engine, client: httpx.Client, amazon: Any, sent: dict[str, Any]) -> None:
    # Without a configuration set SES publishes no tags, but the original
    # headers — our X-SES-MESSAGE-TAGS among them — come back
    event = ses_to_ada(fixture("ses/bounce.json"), "jane@example.com", sent)
    event["mail"]["headers"] = [{"name": "X-SES-MESSAGE-TAGS", "value": f"outreach_message_id={sent['id']}"}]
    assert_mapped(engine, sent, ses_post(client, amazon, event), B, "2016-01-27T14:59:38.237", event)


def test_ses_one_notification_for_several_recipients(engine: Engine, client: httpx.Client, amazon: Any,
                                                     sent: dict[str, Any]) -> None:
    # The documented bounce without a DSN names Jane and Richard: one event each;
    # Ada (for Jane) is found by her address, Richard is unknown; both never mailed again
    event = fixture("ses/bounce_no_dsn.json")
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = ADA
    assert ses_post(client, amazon, event).json() == {"events": 2, "stored": 2, "duplicates": 0}
    assert [(t, m) for t, m, *_ in stored(engine)] == [(B, None), (B, None)]
    assert suppressed(engine) == suppressed(engine, "richard@example.com") == "hard bounce"


# --------------------------------------------------------------------- SendGrid
SENDGRID_EVENTS = [  # sample, type, time
    ("processed", None, None),
    ("deferred", EventType.DEFERRED, "2017-12-15T00:59:29"),
    ("delivered", EventType.DELIVERED, "2017-12-15T00:59:29"),
    ("bounce", B, "2017-12-15T00:59:29"),
    ("blocked", S, "2017-12-15T00:59:29"),
    ("dropped", EventType.FAILED, "2017-12-15T00:59:29"),
    ("open", EventType.OPEN, "2017-12-15T00:59:29"),
    ("click", EventType.CLICK, "2009-08-11T00:00:00"),
    ("spamreport", C, "2017-12-15T00:59:29"),
    ("unsubscribe", U, "2017-12-15T00:59:29"),
    ("group_unsubscribe", U, "2017-12-15T00:59:29"),
    ("group_resubscribe", EventType.UNKNOWN, "2017-12-15T00:59:29"),
    ("account_status_change", EventType.UNKNOWN, "2024-02-28T17:47:08"),
]


def sendgrid_to_ada(event: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """Ada as recipient; our id as the custom arg every email carries (X-SMTPAPI unique_args)."""
    if "email" in event:
        event["email"] = ADA
    return event | {"outreach_message_id": str(sent["id"])}


@pytest.mark.parametrize(("name", "kind", "when"), SENDGRID_EVENTS, ids=[c[0] for c in SENDGRID_EVENTS])
def test_sendgrid_documented_samples(engine: Engine, client: httpx.Client, sent: dict[str, Any], name: str,
                                     kind: EventType | None, when: str | None) -> None:
    batch = [sendgrid_to_ada(e, sent) for e in fixture(f"sendgrid/{name}.json")]
    body = json.dumps(batch).encode()
    answer = client.post("/webhooks/esp/sendgrid", content=body, headers=SENDGRID.headers(body))
    if name == "account_status_change":  # about the account, not a message: kept, never acted on
        assert answer.status_code == 200 and [t for t, *_ in stored(engine)] == [EventType.UNKNOWN]
        return
    assert_mapped(engine, sent, answer, kind, when, batch[0], batch[0].get("url"))


def test_sendgrid_a_batch_of_documented_events_by_smtp_id(engine: Engine, client: httpx.Client,
                                                          sent: dict[str, Any]) -> None:
    # SendGrid posts many events at once; those sent by SMTP keep our Message-ID as smtp-id
    names = ("processed", "deferred", "delivered", "open", "bounce", "spamreport")
    batch = [e | {"email": ADA} for n in names for e in fixture(f"sendgrid/{n}.json")]
    for event in batch:
        event["smtp-id"] = sent["message_id"]
    body = json.dumps(batch).encode()
    answer = client.post("/webhooks/esp/sendgrid", content=body, headers=SENDGRID.headers(body))
    assert answer.json() == {"events": 5, "stored": 5, "duplicates": 0}
    assert [(t, m) for t, m, *_ in stored(engine)] == [
        (EventType.DEFERRED, sent["id"]), (EventType.DELIVERED, sent["id"]), (EventType.OPEN, sent["id"]),
        (B, sent["id"]), (C, sent["id"])]
    assert client.post("/webhooks/esp/sendgrid", content=body,
                       headers=SENDGRID.headers(body)).json()["duplicates"] == 5


# ---------------------------------------------------------------------- Mailgun
MAILGUN = [  # sample, type, time
    ("delivered", EventType.DELIVERED, "2018-03-19T15:11:02.908181"),
    ("failed_permanent", B, "2018-08-12T21:47:02.389832"),
    ("failed_permanent_suppress_bounce", B, "2018-03-16T20:46:35.375624"),
    ("failed_temporary", S, "2018-08-12T22:11:39.659519"),
    ("rejected", EventType.FAILED, "2018-06-22T22:02:56.104692"),
    ("complained", C, "2013-08-22T23:31:00.049634"),
    ("unsubscribed", U, "2013-08-22T23:23:11.421473"),
    ("opened", EventType.OPEN, "2018-08-12T21:33:20.089676"),
    ("clicked", EventType.CLICK, "2018-08-12T21:33:20.089676"),
]


def mailgun_post(client: httpx.Client, payload: dict[str, Any], sent: dict[str, Any],
                 name: str) -> tuple[httpx.Response, dict[str, Any]]:
    """The sample about Ada, signed with a fresh token: the answer and the body posted."""
    data = payload["event-data"]
    if "recipient" in data:
        data["recipient"] = ADA
    # Our id as the user variable every email carries (X-Mailgun-Variables)
    data["user-variables"] = (data.get("user-variables") or {}) | {"outreach_message_id": str(sent["id"])}
    body = mailgun_signed(payload, MAILGUN_KEY, token=f"token-{name}")
    answer = client.post("/webhooks/esp/mailgun", content=body, headers={"Content-Type": "application/json"})
    return answer, json.loads(body)


@pytest.mark.parametrize(("name", "kind", "when"), MAILGUN, ids=[c[0] for c in MAILGUN])
def test_mailgun_documented_samples(engine: Engine, client: httpx.Client, sent: dict[str, Any], name: str,
                                    kind: EventType, when: str) -> None:
    payload = fixture(f"mailgun/{name}.json")
    answer, posted = mailgun_post(client, payload, sent, name)
    assert_mapped(engine, sent, answer, kind, when, posted, payload["event-data"].get("url"))


@pytest.mark.parametrize(("reason", "kind"), [("suppress-complaint", C), ("suppress-unsubscribe", U)])
def test_mailgun_drop_for_its_own_list_is_what_the_list_says(engine: Engine, client: httpx.Client,
                                                             sent: dict[str, Any], reason: str,
                                                             kind: EventType) -> None:
    # Mailgun's permanent-failure sample, for an address on its complaint or unsubscribe list
    payload = fixture("mailgun/failed_permanent_suppress_bounce.json")
    payload["event-data"]["reason"] = reason
    answer, posted = mailgun_post(client, payload, sent, reason)
    assert_mapped(engine, sent, answer, kind, "2018-03-16T20:46:35.375624", posted)


# --------------------------------------------------------------------- Postmark
POSTMARK = [  # sample, type, time
    ("delivery", EventType.DELIVERED, "2019-11-05T16:33:54.907025"),
    ("bounce", B, "2019-11-05T16:33:54.907025"),
    ("bounce_legacy_offset", B, "2016-04-27T20:28:50.396393"),
    ("bounce_unsubscribe_variant", U, None),  # no time at all: dated on arrival
    ("open", EventType.OPEN, "2019-11-05T16:33:54.907025"),
    ("click", EventType.CLICK, "2017-10-25T15:21:11.906561"),
    ("spam_complaint", C, "2019-11-05T16:33:54.907025"),
    ("subscription_change", B, "2020-02-01T10:53:34.416071"),  # the documented one: a hard bounce
    ("subscription_change_manual", U, "2022-06-05T17:17:32"),
    ("subscription_change_reactivated", EventType.UNKNOWN, "2022-06-05T17:17:32"),
]


def postmark_to_ada(event: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """Ada as recipient; our id as the metadata every email carries (X-PM-Metadata-outreach_message_id)."""
    for key in ("Recipient", "Email"):
        if key in event:
            event[key] = ADA
    return event | {"Metadata": (event.get("Metadata") or {}) | {"outreach_message_id": str(sent["id"])}}


@pytest.mark.parametrize(("name", "kind", "when"), POSTMARK, ids=[c[0] for c in POSTMARK])
def test_postmark_documented_samples(engine: Engine, client: httpx.Client, sent: dict[str, Any], name: str,
                                     kind: EventType, when: str | None) -> None:
    event = postmark_to_ada(fixture(f"postmark/{name}.json"), sent)
    assert_mapped(engine, sent, postmark_post(client, event), kind, when, event, event.get("OriginalLink"))


def test_postmark_bounce_finds_the_message_our_smtp_sender_sent(engine: Engine, client: httpx.Client,
                                                                sent: dict[str, Any]) -> None:
    # Given our SMTP sender sent message #id (through a relay standing in for Postmark's SMTP)
    with smtp_server() as relay:
        backend = backend_for(load_settings(secret_key="s3cret", email_transport="smtp", smtp_host=relay.host,
                                            smtp_port=relay.port, from_address="shop@outreach.example"), "email")
        backend.deliver(Envelope(message_id=sent["id"], channel="email", to=ADA, subject="Hello", text="Hi Ada",
                                 idempotency_key=f"outreach-msg-{sent['id']}"))
        mail = relay.received[-1].parsed()
    # Postmark keeps each X-PM-Metadata-<key> header and returns it as Metadata[key]
    metadata = {name.removeprefix("X-PM-Metadata-"): str(value) for name, value in mail.items()
                if name.startswith("X-PM-Metadata-")}
    assert metadata == {"outreach_message_id": str(sent["id"])}
    # When Postmark reports the documented bounce, under its own MessageID, with that metadata
    bounce = fixture("postmark/bounce.json") | {"Email": ADA, "Metadata": metadata}
    # Then it is our message's bounce, and Ada is never mailed again
    assert_mapped(engine, sent, postmark_post(client, bounce), B, "2019-11-05T16:33:54.907025", bounce)

"""ESP feeds over real HTTP, on SQLite and PostgreSQL: the providers'
documented sample payloads, signed as each provider signs them, and what a
marketer must see happen — bounced and complaining addresses never mailed
again, retries stored once, forgeries stored never."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from esp_helpers import SendGridKey, fixture, mailgun_signed
from esp_shop import (
    ARRIVAL,
    MAILGUN_KEY,
    SENDGRID,
    TOPIC,
    consent,
    events,
    postmark_post,
    refusal,
    stored_count,
    suppressed,
)
from outreach.config import Settings, load_settings
from outreach.domain import ConsentStatus, EventType
from outreach.webhooks.app import create_app
from outreach.webhooks.server import serve_in_thread

#: The shop's fixtures: amazon, settings, client, sent.
pytest_plugins = ["esp_fixtures"]

# ------------------------------------------------------------------- Amazon SES
def ses_post(client: httpx.Client, amazon: Any, ses_event: dict[str, Any] | None, *, version: str = "1",
             base: str = "sns/notification.json", **changes: Any) -> httpx.Response:
    envelope = fixture(base) | changes
    if ses_event is not None:
        envelope["Message"] = json.dumps(ses_event)
    signed = amazon.sign(envelope, version=version)
    return client.post("/webhooks/esp/ses", content=json.dumps(signed),
                       headers={"x-amz-sns-message-type": signed["Type"], "Content-Type": "text/plain"})


def ours(ses_event: dict[str, Any], sent: dict[str, Any], key: str, recipients: str) -> dict[str, Any]:
    """The documented event, about our message to Ada."""
    for header in ses_event["mail"]["headers"]:
        if header["name"] == "Message-ID":
            header["value"] = sent["message_id"]
    ses_event[key][recipients] = [{"emailAddress": "ada@example.com"}]
    return ses_event


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_hard_bounce_suppresses_once(engine: Engine, client: httpx.Client, amazon: Any,
                                         sent: dict[str, Any], version: str) -> None:
    # Given SES reports a permanent bounce of our message to Ada, signed by SNS
    bounce = ours(fixture("ses/bounce.json"), sent, "bounce", "bouncedRecipients")
    # When it arrives, and SNS retries it
    first = ses_post(client, amazon, bounce, version=version)
    again = ses_post(client, amazon, bounce, version=version)
    # Then one BOUNCE for our message, and the worker will not mail Ada again
    assert first.status_code == 200 and first.json()["stored"] == 1
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert events(engine) == [(EventType.BOUNCE, sent["id"])]
    assert refusal(engine, sent["id"]) == "address suppressed (hard bounce)"
    assert amazon.requests.count("/SimpleNotificationService-test.pem") == 1  # fetched once, kept


def test_ses_complaint_revokes_consent(engine: Engine, client: httpx.Client, amazon: Any,
                                       sent: dict[str, Any]) -> None:
    complaint = ours(fixture("ses/complaint.json"), sent, "complaint", "complainedRecipients")
    assert ses_post(client, amazon, complaint, version="2").status_code == 200
    assert events(engine) == [(EventType.COMPLAINT, sent["id"])]
    assert consent(engine, sent["customer"]) is ConsentStatus.REVOKED
    assert suppressed(engine) == "complaint"


def test_ses_forged_or_foreign_messages_store_nothing(engine: Engine, client: httpx.Client, amazon: Any,
                                                      sent: dict[str, Any]) -> None:
    bounce = ours(fixture("ses/bounce.json"), sent, "bounce", "bouncedRecipients")
    signed = amazon.sign(fixture("sns/notification.json") | {"Message": json.dumps(bounce)})
    headers = {"x-amz-sns-message-type": "Notification"}
    # A body changed after signing
    tampered = dict(signed, Message=signed["Message"].replace("Permanent", "Transient"))
    assert client.post("/webhooks/esp/ses", json=tampered, headers=headers).status_code == 403
    # A certificate on a host that is not Amazon's is never fetched
    amazon.requests.clear()
    elsewhere = dict(signed, SigningCertURL="https://sns.evil.example/cert.pem")
    assert client.post("/webhooks/esp/ses", json=elsewhere, headers=headers).status_code == 403
    assert amazon.requests == []
    # A validly signed message from another topic
    assert ses_post(client, amazon, bounce, TopicArn="arn:aws:sns:us-west-2:999:Other").status_code == 403
    # Not JSON at all
    assert client.post("/webhooks/esp/ses", content=b"{nope", headers=headers).status_code == 400
    assert stored_count(engine) == 0 and suppressed(engine) is None


def test_ses_signed_nonsense_is_a_400(engine: Engine, client: httpx.Client, amazon: Any) -> None:
    # Signed by Amazon but not an SES notification, or with an address PostgreSQL cannot store
    bounce = fixture("ses/bounce.json")
    bounce["bounce"]["bouncedRecipients"] = [{"emailAddress": "jane\x00@example.com"}]
    for message in (bounce, ["not", "an", "object"]):
        answer = ses_post(client, amazon, None, Message=json.dumps(message))
        assert answer.status_code == 400 and answer.json()["errors"][0]["message"]
    assert stored_count(engine) == 0


def test_ses_subscription_is_confirmed_only_for_our_topic(client: httpx.Client, amazon: Any) -> None:
    confirm = fixture("sns/subscription_confirmation.json")
    subscribe = amazon.base + "/?Action=ConfirmSubscription&Token=" + confirm["Token"][:16]
    answer = ses_post(client, amazon, None, base="sns/subscription_confirmation.json", SubscribeURL=subscribe)
    assert answer.status_code == 200 and answer.json() == {"confirmed": TOPIC}
    assert amazon.requests[-1] == subscribe.removeprefix(amazon.base)
    amazon.requests.clear()
    other = ses_post(client, amazon, None, base="sns/subscription_confirmation.json", SubscribeURL=subscribe,
                     TopicArn="arn:aws:sns:us-west-2:999:Other")
    assert other.status_code == 403 and subscribe.removeprefix(amazon.base) not in amazon.requests


def test_ses_delivery_of_an_unknown_message_is_kept(engine: Engine, client: httpx.Client, amazon: Any) -> None:
    # The documented delivery, to jane@example.com whom we do not know: kept, answered 2xx
    answer = ses_post(client, amazon, fixture("ses/delivery.json"))
    assert answer.status_code == 200 and events(engine) == [(EventType.DELIVERED, None)]


# --------------------------------------------------------------------- SendGrid
def sendgrid_sample(sent: dict[str, Any]) -> bytes:
    batch = fixture("sendgrid/bounce.json") + fixture("sendgrid/delivered.json")
    for event in batch:
        event.update({"email": "ada@example.com", "smtp-id": sent["message_id"]})
    return json.dumps(batch).encode()


def test_sendgrid_refuses_bad_signatures_and_bad_bodies(engine: Engine, client: httpx.Client,
                                                        sent: dict[str, Any]) -> None:
    body = sendgrid_sample(sent)
    other = SendGridKey.generate()
    assert client.post("/webhooks/esp/sendgrid", content=body, headers=other.headers(body)).status_code == 403
    stale = SENDGRID.headers(body) | {"X-Twilio-Email-Event-Webhook-Timestamp": "1513299570"}
    assert client.post("/webhooks/esp/sendgrid", content=body, headers=stale).status_code == 403
    for bad in (b'{"event": "bounce"}', b'[{"event": "bounce", "timestamp": "soon"}]', b"\xff"):
        answer = client.post("/webhooks/esp/sendgrid", content=bad, headers=SENDGRID.headers(bad))
        assert answer.status_code == 400 and answer.json()["errors"][0]["field"]
    assert stored_count(engine) == 0 and suppressed(engine) is None
    # A good signature over the same body: accepted
    assert client.post("/webhooks/esp/sendgrid", content=body,
                       headers=SENDGRID.headers(body)).json()["stored"] == 2


# ---------------------------------------------------------------------- Mailgun
def mailgun_post(client: httpx.Client, payload: dict[str, Any], *, token: str) -> httpx.Response:
    return client.post("/webhooks/esp/mailgun", content=mailgun_signed(payload, MAILGUN_KEY, token=token),
                       headers={"Content-Type": "application/json"})


def to_ada(name: str, sent: dict[str, Any], *, event_id: str | None = None,
           at: float | None = None) -> dict[str, Any]:
    payload = fixture(name)
    data = payload["event-data"]
    data["recipient"] = "ada@example.com"
    data["message"]["headers"]["message-id"] = sent["message_id"].strip("<>")
    data["id"] = event_id or data.get("id") or name
    data["timestamp"] = at or data["timestamp"]
    return dict(payload)


def test_mailgun_permanent_failure_suppresses_and_a_replayed_token_is_refused(
        engine: Engine, client: httpx.Client, sent: dict[str, Any]) -> None:
    payload = to_ada("mailgun/failed_permanent.json", sent)
    token = "651869375b9df3c98fc15c4889b102119add1235c38fc92824"
    assert mailgun_post(client, payload, token=token).status_code == 200
    assert events(engine) == [(EventType.BOUNCE, sent["id"])] and suppressed(engine) == "hard bounce"
    # The same signed token with another body: a replay, refused, nothing stored
    forged = to_ada("mailgun/complained.json", sent)
    assert mailgun_post(client, forged, token=token).status_code == 406
    assert len(events(engine)) == 1 and consent(engine, sent["customer"]) is ConsentStatus.GRANTED
    # A wrong signature
    wrong = json.loads(mailgun_signed(forged, "not-the-key", token="t" * 50))
    assert client.post("/webhooks/esp/mailgun", json=wrong).status_code == 403
    assert len(events(engine)) == 1


def test_soft_bounces_suppress_after_the_limit_in_a_row(engine: Engine, client: httpx.Client,
                                                        sent: dict[str, Any]) -> None:
    def soft(n: int) -> int:
        return mailgun_post(client, to_ada("mailgun/failed_temporary.json", sent, event_id=f"soft-{n}",
                                           at=ARRIVAL.replace(tzinfo=UTC).timestamp() + n),
                            token=f"tok-soft-{n}").status_code

    # Two soft bounces, then a delivery (Postmark's report), then two more: never three in a row
    assert soft(1) == soft(2) == 200
    delivered = (ARRIVAL + timedelta(seconds=2.5)).isoformat() + "Z"
    assert postmark_post(client, fixture("postmark/delivery.json") | {
        "DeliveredAt": delivered, "Metadata": {"outreach_message_id": str(sent["id"])}}).status_code == 200
    assert soft(3) == soft(4) == 200
    assert suppressed(engine) is None and refusal(engine, sent["id"]) is None
    # The third in a row suppresses
    assert soft(5) == 200
    assert refusal(engine, sent["id"]) == "address suppressed (soft bounces)"


# --------------------------------------------------------------------- Postmark
def test_postmark_unknown_recipient_and_vocabulary(engine: Engine, client: httpx.Client,
                                                   sent: dict[str, Any]) -> None:
    # A bounce of a message we do not know, to Ada's address: matched to her by address
    bounce = fixture("postmark/bounce.json") | {"Email": "ADA@example.com"}
    assert postmark_post(client, bounce).status_code == 200
    assert suppressed(engine) == "hard bounce"
    # A record type Postmark may add one day: stored as UNKNOWN, answered 2xx
    new = fixture("postmark/delivery.json") | {"RecordType": "Teleported"}
    assert postmark_post(client, new).status_code == 200
    assert events(engine) == [(EventType.BOUNCE, None), (EventType.UNKNOWN, None)]


def test_postmark_wrong_password_and_bad_payloads(engine: Engine, client: httpx.Client) -> None:
    assert postmark_post(client, fixture("postmark/bounce.json"), password="guess").status_code == 401
    assert client.post("/webhooks/esp/postmark", json=fixture("postmark/bounce.json")).status_code == 401
    answer = postmark_post(client, fixture("postmark/bounce.json") | {"BouncedAt": "yesterday"})
    assert answer.status_code == 400 and "yesterday" in answer.text
    assert postmark_post(client, fixture("postmark/bounce.json") | {"MessageID": "a\x00b"}).status_code == 400
    assert stored_count(engine) == 0


# ----------------------------------------------------------------------- shared
def test_bodies_are_bounded(client: httpx.Client) -> None:
    huge = b"[" + b" " * (1 << 20) + b"]"
    assert client.post("/webhooks/esp/sendgrid", content=huge,
                       headers=SENDGRID.headers(huge)).status_code == 413


def test_feeds_exist_only_when_configured(engine: Engine) -> None:
    bare = create_app(load_settings(secret_key="s3cret"), engine)
    with serve_in_thread(bare) as base, httpx.Client(base_url=base) as http:
        for feed in ("ses", "sendgrid", "mailgun", "postmark"):
            assert http.post(f"/webhooks/esp/{feed}", json={}).status_code == 404


def test_a_database_down_is_a_503_the_provider_retries(settings: Settings) -> None:
    from outreach.store.engine import make_engine

    unreachable = make_engine("postgresql+psycopg://outreach@127.0.0.1:9/none?connect_timeout=2")
    with serve_in_thread(create_app(settings, unreachable)) as base, httpx.Client(base_url=base) as http:
        answer = postmark_post(http, fixture("postmark/bounce.json"))
    assert answer.status_code == 503 and "retries" in answer.json()["hint"]

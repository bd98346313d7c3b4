"""Aliyun's and Tencent's pushes over real HTTP, on both databases: delivery
reports become events of the message, STOP replies (退订, TD, R) opt out at
once and START opts back in; the URL's secret guards every route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import test_webhooks
from factories import NOW, add_customer
from outreach.config import Settings, load_settings
from outreach.domain import Channel, ConsentStatus, EventType, MessageStatus
from outreach.errors import ConfigError
from outreach.store.engine import transaction
from outreach.store.models import Message, Rule, Suppression, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.server import free_port
from test_webhooks import count, latest_consent

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "u8Qy-3kTg_Vd0pLr9sXe2A"
WANG, LI = "+8613800000001", "+8613900000002"
#: Each provider's two SMS, as SendSms answered them, and its fixtures.
PROVIDER_IDS = {"aliyun": ("900619746936498440^0", "900619746936498441^0"),
                "tencent": ("2433:00000000000000000001", "2433:00000000000000000002")}
REPORTS = {"aliyun": "aliyun_sms_report.json", "tencent": "tencent_sms_status.json"}
REPLIES = {"aliyun": "aliyun_sms_up.json", "tencent": "tencent_sms_reply.json"}
#: The webhook server over real HTTP (test_webhooks' fixture, with this module's settings).
client = test_webhooks.client


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(params=["aliyun", "tencent"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings() -> Settings:
    return load_settings(public_url=f"http://127.0.0.1:{free_port()}", secret_key="s3cret",
                         aliyun_webhook_secret=SECRET, tencent_webhook_secret=SECRET)


@pytest.fixture
def sent(engine: Engine, provider: str) -> dict[str, int]:
    """Wang and Li each got an SMS through the provider; both had consent."""
    with transaction(engine) as s:
        rule = Rule(name="winback", path="rules/winback.yaml", definition={}, checksum="x", updated_at=NOW)
        s.add(rule)
        s.flush()
        ids = {}
        for ext, phone, provider_id in (("wang", WANG, PROVIDER_IDS[provider][0]),
                                        ("li", LI, PROVIDER_IDS[provider][1])):
            customer = add_customer(s, ext, name="王小明", locale="zh_CN", email=None, phone=phone,
                                    consent={"sms": "granted"})
            message = Message(rule_id=rule.id, customer_id=customer.id, channel=Channel.SMS, occurrence_key="k",
                              status=MessageStatus.SENT, to_address=phone, planned_at=NOW, sent_at=NOW, attempts=1,
                              provider_id=provider_id)
            s.add(message)
            s.flush()
            ids[ext] = message.id
    return ids


def reply_saying(provider: str, words: str) -> Any:
    """The provider's captured reply push, saying ``words``."""
    reply = fixture(REPLIES[provider])
    if provider == "aliyun":
        reply[0]["content"] = words
    else:
        reply["text"] = words
    return reply


def events_of(engine: Engine, message_id: int) -> list[EventType]:
    with Session(engine) as s:
        return list(s.scalars(select(TrackingEvent.type).where(TrackingEvent.message_id == message_id)))


def ok(provider: str) -> dict[str, Any]:
    return {"code": 0, "msg": "接收成功"} if provider == "aliyun" else {"result": 0, "errmsg": "OK"}


def test_delivery_reports_mark_the_message_delivered_or_failed_once(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str
) -> None:
    # Given the provider's report of both messages (Aliyun's names ours by out_id for Wang's: we send it as OutId)
    report = fixture(REPORTS[provider])
    if provider == "aliyun":
        report[0]["out_id"] = f"outreach-msg-{sent['wang']}"
    # When it is pushed, and pushed again (the provider retries when unsure)
    for _ in range(2):
        answer = client.post(f"/webhooks/{provider}/{SECRET}/report", json=report)
        assert (answer.status_code, answer.json()) == (200, ok(provider))
    # Then Wang's message is delivered and Li's failed, each recorded once with the provider's JSON
    assert events_of(engine, sent["wang"]) == [EventType.DELIVERED]
    assert events_of(engine, sent["li"]) == [EventType.FAILED]


@pytest.mark.parametrize("word", ["退订", "TD", "R", "ｔｄ"])
def test_a_stop_reply_revokes_sms_consent_and_suppresses_the_number_at_once(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str, word: str
) -> None:
    answer = client.post(f"/webhooks/{provider}/{SECRET}/reply", json=reply_saying(provider, word))
    assert (answer.status_code, answer.json()) == (200, ok(provider))
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.REVOKED
    assert count(engine, Suppression, Suppression.address == WANG) == 1
    assert latest_consent(engine, "li", Channel.SMS) is ConsentStatus.GRANTED  # only the replying number


def test_start_after_stop_subscribes_again_with_the_reply_as_evidence(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str
) -> None:
    stop, start = fixture(REPLIES[provider]), reply_saying(provider, "START")
    if provider == "aliyun":
        start[0]["sequence_id"] = 1234567891
    else:
        start["time"] += 60
    assert client.post(f"/webhooks/{provider}/{SECRET}/reply", json=stop).status_code == 200
    assert client.post(f"/webhooks/{provider}/{SECRET}/reply", json=start).status_code == 200
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED
    assert count(engine, Suppression, Suppression.address == WANG) == 0


def test_other_replies_are_recorded_as_replies_of_the_customer(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str
) -> None:
    reply = reply_saying(provider, "好的，谢谢\n周末去店里")
    assert client.post(f"/webhooks/{provider}/{SECRET}/reply", json=reply).status_code == 200
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.REPLY) == 1
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED


def test_a_wrong_secret_is_a_404_and_stores_nothing(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str
) -> None:
    for path in ("report", "reply"):
        answer = client.post(f"/webhooks/{provider}/{SECRET[:-1]}x/{path}", json=fixture(REPLIES[provider]))
        assert answer.status_code == 404
    assert count(engine, TrackingEvent) == 0
    assert latest_consent(engine, "wang", Channel.SMS) is ConsentStatus.GRANTED


@pytest.mark.parametrize("kind, body, reason", [
    ("report", b"not json", "not JSON"),
    ("report", b"{}", "JSON array"),
    ("report", b"[]", "1 to 1000 items"),
    ("report", json.dumps([{"success": True}]).encode(), "0.biz_id: is missing|0.sid: is missing"),
    ("report", json.dumps([{"sid": "x", "biz_id": "x", "success": "maybe", "report_status": "SUCCESS",
                            "note": "a\u0000b"}]).encode(), "NUL|expected true or false"),
    ("reply", json.dumps([{"phone_number": "call me", "mobile": "call me", "content": "TD", "text": "TD",
                           "nationcode": "86"}]).encode(), "is not a phone number"),
    ("reply", json.dumps([{"phone_number": "13800000001", "mobile": "13800000001", "nationcode": "86"}]).encode(),
     "content: is missing|text: is missing"),
])
def test_a_bad_payload_is_a_400_with_its_reason_and_stores_nothing(
    engine: Engine, client: httpx.Client, sent: dict[str, int], provider: str, kind: str, body: bytes, reason: str
) -> None:
    answer = client.post(f"/webhooks/{provider}/{SECRET}/{kind}", content=body,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    message = answer.json()["msg" if provider == "aliyun" else "errmsg"]
    assert any(part in message for part in reason.split("|")), message
    assert count(engine, TrackingEvent) == 0


def test_routes_exist_only_with_their_secret_and_the_configured_provider_needs_it(engine: Engine) -> None:
    bare = create_app(load_settings(secret_key="s"), engine)
    assert not any("/webhooks/aliyun" in getattr(r, "path", "") or "/webhooks/tencent" in getattr(r, "path", "")
                   for r in bare.routes)
    for provider in ("aliyun", "tencent"):
        with pytest.raises(ConfigError, match=f"OUTREACH_{provider.upper()}_WEBHOOK_SECRET"):
            create_app(load_settings(secret_key="s", sms_transport=provider), engine)
        with pytest.raises(ConfigError, match="16 to 128 letters"):
            create_app(load_settings(secret_key="s", **{f"{provider}_webhook_secret": "short"}), engine)

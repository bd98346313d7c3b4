"""Delivery channels against real servers: aiosmtpd, a Twilio-speaking HTTP
server, and the file outbox on disk.

One contract suite runs against every backend of a channel; the tests after
it cover what only one backend does (SMTP replies, Twilio error codes, the
outbox's idempotency and locking).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from outreach.channels import (
    ChannelBackend,
    Envelope,
    backend_for,
    check_settings,
    register_backend,
    registered_backends,
    transports,
)
from outreach.channels.base import deliver_all
from outreach.channels.mime import build_email
from outreach.channels.outbox import OutboxSms
from outreach.channels.sms import sms_encoding, sms_segments
from outreach.config import Settings, load_settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, RegistryError
from smtp_server import SmtpServer, smtp_server
from twilio_server import TwilioServer, twilio_server

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-7f3a"
SHOP_FROM = "Jade Leaf Tea <hello@jadeleaf.example>"
SMS_FROM = "+14155550100"
PUBLIC_URL = "https://outreach.jadeleaf.example"
UNSUBSCRIBE = "<https://outreach.jadeleaf.example/u/" + "eyJtIjo0Mn0.Zx9" * 8 + ">"
CHINESE_SUBJECT = "王小明，您的会员积分即将到期 — 本周末前使用可享 8 折优惠 🍵"


def email_envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": 42,
        "channel": "email",
        "to": "wang@example.cn",
        "subject": CHINESE_SUBJECT,
        "text": "王小明，您好！\n\n您的 1,280 积分将于周日到期。\n退订：https://outreach.jadeleaf.example/u/x\n",
        "html": "<html><body><p>王小明，您好！</p><p>您的 <b>1,280</b> 积分将于周日到期。</p></body></html>\n",
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "idempotency_key": "outreach-msg-42",
    }
    fields.update(changes)
    return Envelope(**fields)


def sms_envelope(message_id: int = 7, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": message_id,
        "channel": "sms",
        "to": "+8613800000001",
        "text": "【翠叶茶】王小明，您的积分本周日到期，回复TD退订",
        "idempotency_key": f"outreach-msg-{message_id}",
    }
    fields.update(changes)
    return Envelope(**fields)


@pytest.fixture
def make_settings(settings_env: Path) -> Callable[..., Settings]:
    """Settings isolated from the machine's environment; outbox under tmp."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"from_address": SHOP_FROM, "public_url": PUBLIC_URL}
        return load_settings(**(base | overrides))

    return build


def refusing_smtp_server(*, pipelining: bool) -> contextlib.AbstractContextManager[SmtpServer]:
    return smtp_server(refuse={
        "nobody@example.cn": "550 5.1.1 <nobody@example.cn>: Recipient address rejected: User unknown",
        "greylisted@example.cn": "450 4.2.0 <greylisted@example.cn>: Greylisted, try again later",
    }, pipelining=pipelining)


@pytest.fixture(params=["one-by-one", "pipelining"])
def smtp(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """A server that answers each command in turn, or one that offers
    PIPELINING, so Outreach sends MAIL, RCPT and DATA in one write."""
    with refusing_smtp_server(pipelining=request.param == "pipelining") as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with twilio_server(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as server:
        yield server


def smtp_settings(make_settings: Callable[..., Settings], server: SmtpServer, **extra: Any) -> Settings:
    return make_settings(email_transport="smtp", smtp_host=server.host, smtp_port=server.port, **extra)


def twilio_settings(make_settings: Callable[..., Settings], server: TwilioServer, **extra: Any) -> Settings:
    return make_settings(**{
        "sms_transport": "twilio", "twilio_base_url": server.url, "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN, "twilio_from": SMS_FROM, **extra,
    })


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ---------------------------------------------------------------- contract suite
@dataclass
class EmailChannel:
    backend: ChannelBackend
    delivered: Callable[[], list[EmailMessage]]


@dataclass
class SmsChannel:
    backend: ChannelBackend
    delivered: Callable[[], list[dict[str, str]]]  # to, from, body


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture(params=["outbox-email", "smtp", "smtp-pipelining"])
def email_channel(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], settings_env: Path
) -> Iterator[EmailChannel]:
    if request.param.startswith("smtp"):
        with refusing_smtp_server(pipelining=request.param == "smtp-pipelining") as server:
            backend = backend_for(smtp_settings(make_settings, server), "email")
            yield EmailChannel(backend, lambda: [r.parsed() for r in server.received])
        return
    backend = backend_for(make_settings(), "email")
    folder = settings_env / "outbox" / "email"
    yield EmailChannel(backend, lambda: [parse(p.read_bytes()) for p in sorted(folder.glob("*.eml"))])


@pytest.fixture(params=["outbox-sms", "twilio"])
def sms_channel(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], settings_env: Path
) -> SmsChannel:
    if request.param == "twilio":
        server: TwilioServer = request.getfixturevalue("twilio")
        backend = backend_for(twilio_settings(make_settings, server), "sms")
        return SmsChannel(backend, lambda: [
            {"to": r["to"], "from": r["from"], "body": r["body"]} for r in server.state.created
        ])
    backend = backend_for(make_settings(twilio_from=SMS_FROM), "sms")
    path = settings_env / "outbox" / "sms.jsonl"

    def lines() -> list[dict[str, str]]:
        found = read_jsonl(path) if path.exists() else []
        return [{"to": r["to"], "from": r["from"], "body": r["body"]} for r in found]

    return SmsChannel(backend, lines)


def test_email_arrives_with_chinese_subject_both_parts_and_unsubscribe_headers(
    email_channel: EmailChannel,
) -> None:
    # When a Chinese email with one-click unsubscribe headers is delivered
    envelope = email_envelope()
    provider_id = email_channel.backend.deliver(envelope)
    # Then exactly that message arrives and reads back unchanged
    [message] = email_channel.delivered()
    assert message["Subject"] == CHINESE_SUBJECT
    assert message["From"] == SHOP_FROM and message["To"] == "wang@example.cn"
    assert message["List-Unsubscribe"] == UNSUBSCRIBE
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content() == envelope.text
    assert message.get_body(("html",)).get_content() == envelope.html
    # And the provider id is the Message-ID, derived from the idempotency key
    assert provider_id == message["Message-ID"] == "<outreach-msg-42@jadeleaf.example>"
    assert message["Date"].datetime.tzinfo is not None


def test_email_to_something_that_is_not_an_address_fails_for_good(email_channel: EmailChannel) -> None:
    with pytest.raises(PermanentChannelError, match="not one email address"):
        email_channel.backend.deliver(email_envelope(to="Wang Xiaoming"))
    assert email_channel.delivered() == []


def test_email_without_html_is_plain_text(email_channel: EmailChannel) -> None:
    email_channel.backend.deliver(email_envelope(html=None, text="Hello Ada,\nyour tea is waiting.\n"))
    [message] = email_channel.delivered()
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Hello Ada,\nyour tea is waiting.\n"


def test_sms_arrives_with_its_chinese_body(sms_channel: SmsChannel) -> None:
    provider_id = sms_channel.backend.deliver(sms_envelope())
    assert provider_id
    assert sms_channel.delivered() == [
        {"to": "+8613800000001", "from": SMS_FROM, "body": "【翠叶茶】王小明，您的积分本周日到期，回复TD退订"}
    ]


def test_sms_to_a_number_not_in_e164_form_fails_for_good(sms_channel: SmsChannel) -> None:
    with pytest.raises(PermanentChannelError, match="138 0000 0001"):
        sms_channel.backend.deliver(sms_envelope(to="138 0000 0001"))
    assert sms_channel.delivered() == []


# ---------------------------------------------------------------- email, built
def test_long_unsubscribe_url_is_written_as_is_not_encoded() -> None:
    raw = build_email(email_envelope(), from_address=SHOP_FROM).as_bytes()
    assert f"List-Unsubscribe: {UNSUBSCRIBE}\n".encode() in raw
    assert b"\n\n" in raw and all(len(line) <= 998 for line in raw.split(b"\n"))


@pytest.mark.parametrize("headers, problem", [
    ({"Subject": "sneaky"}, "set by Outreach"),
    ({"X-Campaign": "winback\nBcc: everyone@example.com"}, "cannot be built"),
])
def test_envelope_headers_cannot_rewrite_or_inject(headers: dict[str, str], problem: str) -> None:
    with pytest.raises(PermanentChannelError, match=problem):
        build_email(email_envelope(headers=headers), from_address=SHOP_FROM)


def test_from_address_without_domain_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="OUTREACH_FROM_ADDRESS"):
        build_email(email_envelope(), from_address="Jade Leaf Tea")


def test_smtp_delivers_to_the_bare_address_of_a_named_recipient(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    backend.deliver(email_envelope(to="王小明 <wang@example.cn>"))
    [received] = smtp.received
    assert received.rcpt_tos == ["wang@example.cn"]
    assert received.parsed()["To"] == "王小明 <wang@example.cn>"


def test_envelope_from_address_overrides_the_setting() -> None:
    message = build_email(email_envelope(from_address="茶 <news@tea.example>"), from_address=SHOP_FROM)
    assert parse(message.as_bytes())["From"] == "茶 <news@tea.example>"
    assert message["Message-ID"] == "<outreach-msg-42@tea.example>"


# ---------------------------------------------------------------- email outbox
def test_outbox_email_is_one_file_per_message_and_redelivery_keeps_it(
    make_settings: Callable[..., Settings], settings_env: Path
) -> None:
    # Given an email delivered to the outbox
    backend = backend_for(make_settings(), "email")
    first = backend.deliver(email_envelope())
    path = settings_env / "outbox" / "email" / "42.eml"
    original = path.read_bytes()
    # When the same message is delivered again (even re-rendered differently)
    again = backend.deliver(email_envelope(text="a second rendering"))
    # Then the file is untouched, the provider id the same, and no temp file is left
    assert again == first
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == ["42.eml"]


def test_outbox_email_delivered_by_many_threads_at_once_is_one_file(
    make_settings: Callable[..., Settings], settings_env: Path
) -> None:
    backend = backend_for(make_settings(), "email")
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(backend.deliver(email_envelope()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(ids) == {"<outreach-msg-42@jadeleaf.example>"}
    folder = settings_env / "outbox" / "email"
    assert [p.name for p in folder.iterdir()] == ["42.eml"]
    assert parse((folder / "42.eml").read_bytes())["Subject"] == CHINESE_SUBJECT


# ---------------------------------------------------------------- SMS outbox
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_outbox_sms_line_is_written_once_per_idempotency_key(
    make_settings: Callable[..., Settings], settings_env: Path
) -> None:
    backend = backend_for(make_settings(twilio_from=SMS_FROM), "sms")
    first = backend.deliver(sms_envelope())
    second = backend.deliver(sms_envelope())
    [line] = read_jsonl(settings_env / "outbox" / "sms.jsonl")
    assert first == second == line["provider_id"]
    assert line | {"sent_at": None} == {
        "message_id": 7, "to": "+8613800000001", "from": SMS_FROM,
        "body": "【翠叶茶】王小明，您的积分本周日到期，回复TD退订", "segments": 1, "encoding": "UCS-2",
        "idempotency_key": "outreach-msg-7", "provider_id": first, "sent_at": None,
    }


def test_outbox_sms_remembers_lines_written_by_an_earlier_run(settings_env: Path) -> None:
    # Given an sms.jsonl left by a previous run, its last line cut off by a crash
    path = settings_env / "outbox" / "sms.jsonl"
    path.parent.mkdir(parents=True)
    earlier = {"message_id": 7, "idempotency_key": "outreach-msg-7", "body": "earlier"}
    path.write_text(json.dumps(earlier) + "\n" + '{"message_id": 8, "idempotency_k', "utf-8")
    backend = OutboxSms(path=path, from_number=None)
    # When message 7 is handed over again, and message 9 for the first time
    backend.deliver(sms_envelope(7))
    backend.deliver(sms_envelope(9))
    # Then 7 is not repeated and 9 sits on a line of its own after the broken one
    lines = path.read_text("utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0]) == earlier
    assert json.loads(lines[2])["idempotency_key"] == "outreach-msg-9"


def test_outbox_sms_from_concurrent_threads_gives_intact_lines(settings_env: Path) -> None:
    # Given 8 worker threads that are all handed the same 60 messages (a duplicating broker)
    path = settings_env / "outbox" / "sms.jsonl"
    backend = OutboxSms(path=path, from_number=SMS_FROM)
    long_body = "您的积分即将到期。" * 40  # about 1 KB per line, so interleaving would show
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for n in range(60):
            backend.deliver(sms_envelope(n, text=f"{n} {long_body}"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every message is there once, on an intact line
    lines = read_jsonl(path)
    assert sorted(line["message_id"] for line in lines) == list(range(60))
    assert all(line["body"] == f"{line['message_id']} {long_body}" for line in lines)


def _deliver_from_process(path: str, start: Any) -> None:
    backend = OutboxSms(path=Path(path), from_number=SMS_FROM)
    start.wait()
    for n in range(40):
        backend.deliver(sms_envelope(n, text=f"{n} " + "x" * 3000))


def test_outbox_sms_from_concurrent_processes_gives_intact_lines(settings_env: Path) -> None:
    # Given a ledger this process already loaded, and four worker processes
    path = settings_env / "outbox" / "sms.jsonl"
    backend = OutboxSms(path=path, from_number=SMS_FROM)
    backend.deliver(sms_envelope(1000))
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [context.Process(target=_deliver_from_process, args=(str(path), start)) for _ in range(4)]
    # When all of them deliver the same 40 messages at once
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    # Then each message is written once, and this process sees their lines too
    backend.deliver(sms_envelope(5, text="5 again"))
    lines = read_jsonl(path)
    assert sorted(line["message_id"] for line in lines) == [*range(40), 1000]
    assert all(line["body"] == f"{line['message_id']} " + "x" * 3000 for line in lines[1:])


# ---------------------------------------------------------------- SMTP
def test_smtp_recipient_refused_with_550_is_permanent(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    with pytest.raises(PermanentChannelError, match=r"refused recipient nobody@example.cn: 550 5.1.1"):
        backend.deliver(email_envelope(to="nobody@example.cn"))
    assert smtp.received == []


def test_smtp_greylisting_450_is_retryable(make_settings: Callable[..., Settings], smtp: SmtpServer) -> None:
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    with pytest.raises(ChannelError, match=r"450 4.2.0") as caught:
        backend.deliver(email_envelope(to="greylisted@example.cn"))
    assert not isinstance(caught.value, PermanentChannelError)


def test_smtp_connection_is_reused_and_survives_a_refusal(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    # Given one backend sending three messages, the middle one refused
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    backend.deliver(email_envelope(message_id=1, idempotency_key="outreach-msg-1"))
    with pytest.raises(PermanentChannelError):
        backend.deliver(email_envelope(message_id=2, to="nobody@example.cn", idempotency_key="outreach-msg-2"))
    backend.deliver(email_envelope(message_id=3, to="li@example.cn", idempotency_key="outreach-msg-3"))
    # Then the two others arrived, each once, over the one connection
    assert [r.rcpt_tos for r in smtp.received] == [["wang@example.cn"], ["li@example.cn"]]
    assert smtp.sink.sessions == 1


def test_smtp_batch_goes_over_one_connection_each_message_settled_in_order(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    # Given a batch of five: one refused for good, one greylisted, one with dot lines, one not wanted
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    recipients = ["wang@example.cn", "nobody@example.cn", "greylisted@example.cn", "li@example.cn", "zhao@example.cn"]
    envelopes = [email_envelope(message_id=i, to=to, idempotency_key=f"outreach-msg-{i}",
                                text=".\n..dots\n" if i == 3 else "Hello\n") for i, to in enumerate(recipients)]
    settled: list[tuple[int, object]] = []
    # When it is delivered as one batch (pipelined when the server offers PIPELINING)
    deliver_all(backend, envelopes, wanted=lambda index: index != 4,
                settle=lambda index, outcome: settled.append((index, outcome)))
    # Then each wanted message is settled once, in order, with its own outcome
    assert [index for index, _ in settled] == [0, 1, 2, 3]
    outcomes = dict(settled)
    assert outcomes[0] == "<outreach-msg-0@jadeleaf.example>" and outcomes[3] == "<outreach-msg-3@jadeleaf.example>"
    assert isinstance(outcomes[1], PermanentChannelError) and "550 5.1.1" in str(outcomes[1])
    assert isinstance(outcomes[2], ChannelError) and not isinstance(outcomes[2], PermanentChannelError)
    # And the two taken arrived once each, intact, over one connection; the unwanted one never left
    assert [r.rcpt_tos for r in smtp.received] == [["wang@example.cn"], ["li@example.cn"]]
    assert smtp.received[1].parsed().get_body(("plain",)).get_content().rstrip("\n") == ".\n..dots"
    assert smtp.sink.sessions == 1


def test_smtp_lines_starting_with_a_dot_arrive_intact(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    # A lone "." line would end the message early without dot-stuffing (RFC 5321 §4.5.2)
    text = "Top picks:\n.\n..hidden\n. Oolong\nend\n"
    backend = backend_for(smtp_settings(make_settings, smtp), "email")
    backend.deliver(email_envelope(subject="Dots", text=text, html=None))
    [received] = smtp.received
    assert received.parsed().get_content() == text


def test_smtp_server_down_is_retryable(make_settings: Callable[..., Settings]) -> None:
    with closed_port() as port:
        backend = backend_for(make_settings(email_transport="smtp", smtp_port=port), "email")
        with pytest.raises(ChannelError, match=f"127.0.0.1:{port}") as caught:
            backend.deliver(email_envelope())
        assert not isinstance(caught.value, PermanentChannelError)


def test_smtp_server_that_never_answers_is_retryable(make_settings: Callable[..., Settings]) -> None:
    # Given a server that accepts connections but never sends its greeting
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        backend = backend_for(
            make_settings(email_transport="smtp", smtp_port=port, smtp_timeout=0.2), "email"
        )
        # Then the delivery gives up and asks to be retried
        with pytest.raises(ChannelError, match="did not answer") as caught:
            backend.deliver(email_envelope())
    assert not isinstance(caught.value, PermanentChannelError)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login(make_settings: Callable[..., Settings]) -> None:
    with smtp_server(users={"shop": "s3cret"}) as server:
        good = backend_for(smtp_settings(make_settings, server, smtp_username="shop", smtp_password="s3cret"), "email")
        bad = backend_for(smtp_settings(make_settings, server, smtp_username="shop", smtp_password="nope"), "email")
        anonymous = backend_for(smtp_settings(make_settings, server), "email")
        good.deliver(email_envelope())
        with pytest.raises(PermanentChannelError, match=r"535.*check smtp_username and smtp_password"):
            bad.deliver(email_envelope())
        with pytest.raises(PermanentChannelError, match="530"):
            anonymous.deliver(email_envelope())
        assert [r.rcpt_tos for r in server.received] == [["wang@example.cn"]]
        assert server.received[0].mail_from == "hello@jadeleaf.example"


def test_smtp_username_without_password_names_the_setting(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="OUTREACH_SMTP_PASSWORD"):
        backend_for(make_settings(email_transport="smtp", smtp_username="shop"), "email")


def test_smtp_starttls_against_a_server_without_it_fails_clearly(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    backend = backend_for(smtp_settings(make_settings, smtp, smtp_starttls=True), "email")
    with pytest.raises(PermanentChannelError, match="smtp_starttls"):
        backend.deliver(email_envelope())
    assert smtp.received == []


def test_smtp_ssl_and_starttls_together_is_a_config_error(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"smtp_ssl.*smtp_starttls"):
        backend_for(make_settings(email_transport="smtp", smtp_ssl=True, smtp_starttls=True), "email")


# ---------------------------------------------------------------- Twilio
def test_twilio_sends_the_documented_request_and_returns_the_sid(
    make_settings: Callable[..., Settings], twilio: TwilioServer
) -> None:
    backend = backend_for(twilio_settings(make_settings, twilio), "sms")
    sid = backend.deliver(sms_envelope(to="+447700900123", text="Ada, your tea is waiting. Reply STOP to opt out"))
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert [c["sid"] for c in twilio.state.created] == [sid]
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.username == ACCOUNT_SID
    assert request.form == {
        "To": "+447700900123",
        "From": SMS_FROM,
        "Body": "Ada, your tea is waiting. Reply STOP to opt out",
        "StatusCallback": f"{PUBLIC_URL}/webhooks/twilio/status",
    }


@pytest.mark.parametrize("number, listed_as, code", [
    ("+15005550001", "invalid", 21211),
    ("12345", None, 21211),
    ("+447700900999", "unsubscribed", 21610),
    ("+14155550199", "landlines", 21614),
])
def test_twilio_refusals_are_permanent_and_name_the_code(
    make_settings: Callable[..., Settings], twilio: TwilioServer, number: str, listed_as: str | None, code: int
) -> None:
    if listed_as:
        getattr(twilio.state, listed_as).add(number)
    backend = backend_for(twilio_settings(make_settings, twilio), "sms")
    with pytest.raises(PermanentChannelError, match=f"HTTP 400, Twilio error {code}: ") as caught:
        backend.deliver(sms_envelope(to=number))
    assert f"https://www.twilio.com/docs/errors/{code}" in str(caught.value)
    assert "hint:" in str(caught.value)
    assert twilio.state.created == []


@pytest.mark.parametrize("status", [503, 429])
def test_twilio_unavailable_or_rate_limited_is_retryable_then_succeeds(
    make_settings: Callable[..., Settings], twilio: TwilioServer, status: int
) -> None:
    # Given Twilio answers the next request with 503 / 429
    twilio.state.fail_next(1, status=status)
    backend = backend_for(twilio_settings(make_settings, twilio), "sms")
    # When the message is delivered, it fails in a way the worker retries
    with pytest.raises(ChannelError, match=f"HTTP {status}") as caught:
        backend.deliver(sms_envelope())
    assert not isinstance(caught.value, PermanentChannelError)
    # And the retry goes through
    assert backend.deliver(sms_envelope()).startswith("SM")
    assert len(twilio.state.created) == 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_twilio_retry_after_is_read_as_seconds_or_an_http_date(
    make_settings: Callable[..., Settings], twilio: TwilioServer, form: str
) -> None:
    # Given Twilio answers 429 with a Retry-After of two minutes, in either of HTTP's forms
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    twilio.state.fail_next(1, status=429, retry_after="120" if form == "seconds" else later)
    backend = backend_for(twilio_settings(make_settings, twilio), "sms")
    # When a message is delivered, the error carries the wait the provider asked for
    with pytest.raises(ChannelError, match="HTTP 429") as caught:
        backend.deliver(sms_envelope())
    assert caught.value.retry_after is not None and 115 <= caught.value.retry_after <= 120


def test_twilio_unreachable_is_retryable(make_settings: Callable[..., Settings]) -> None:
    with closed_port() as port:
        settings = make_settings(
            sms_transport="twilio", twilio_base_url=f"http://127.0.0.1:{port}",
            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from=SMS_FROM,
        )
        with pytest.raises(ChannelError, match="ConnectError") as caught:
            backend_for(settings, "sms").deliver(sms_envelope())
        assert not isinstance(caught.value, PermanentChannelError)


def test_twilio_wrong_auth_token_is_permanent_with_a_hint(
    make_settings: Callable[..., Settings], twilio: TwilioServer
) -> None:
    backend = backend_for(twilio_settings(make_settings, twilio, twilio_auth_token="wrong"), "sms")
    with pytest.raises(PermanentChannelError, match=r"20003.*twilio_auth_token"):
        backend.deliver(sms_envelope())
    assert twilio.state.created == []


def test_twilio_without_credentials_names_the_missing_setting(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="OUTREACH_TWILIO_ACCOUNT_SID"):
        backend_for(make_settings(sms_transport="twilio"), "sms")
    with pytest.raises(ConfigError, match="OUTREACH_TWILIO_FROM"):
        backend_for(make_settings(
            sms_transport="twilio", twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN
        ), "sms")


# ---------------------------------------------------------------- segments
@pytest.mark.parametrize("text, segments, encoding", [
    ("", 1, "GSM-7"),
    ("a" * 160, 1, "GSM-7"),
    ("a" * 161, 2, "GSM-7"),
    ("a" * 306, 2, "GSM-7"),
    ("a" * 307, 3, "GSM-7"),
    ("Café für Señor Øster, 10% off! @home £5 ¥6 §7 Δ", 1, "GSM-7"),
    ("€" * 80, 1, "GSM-7"),  # extension characters count two septets
    ("€" * 81, 2, "GSM-7"),
    ("{" + "a" * 158, 1, "GSM-7"),
    ("{" + "a" * 159, 2, "GSM-7"),
    ("a" * 152 + "€" + "a" * 152, 3, "GSM-7"),  # the escape pair is never split across parts
    ("中" * 70, 1, "UCS-2"),
    ("中" * 71, 2, "UCS-2"),
    ("中" * 134, 2, "UCS-2"),
    ("中" * 135, 3, "UCS-2"),
    ("a" * 159 + "ç", 3, "UCS-2"),  # one non-GSM character turns the whole text into UCS-2
    ("😀" * 35, 1, "UCS-2"),  # an emoji is two UTF-16 code units
    ("😀" * 36, 2, "UCS-2"),
    ("😀" * 67, 3, "UCS-2"),  # 134 units, but a surrogate pair is never split across parts
])
def test_sms_segments(text: str, segments: int, encoding: str) -> None:
    assert (sms_segments(text), sms_encoding(text)) == (segments, encoding)


# ---------------------------------------------------------------- registry
def test_default_settings_choose_the_file_outbox(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert (backend_for(settings, "email").name, backend_for(settings, "sms").name) == ("outbox-email", "outbox-sms")
    assert {"outbox-email", "smtp", "outbox-sms", "twilio"} <= set(registered_backends())


def test_registry_refuses_a_duplicate_name() -> None:
    with pytest.raises(RegistryError, match="'smtp' is already registered"):
        register_backend("smtp", lambda settings: backend_for(settings, "email"), channel="email")


def test_registry_refuses_unknown_channel_and_transport(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(RegistryError, match="unknown channel 'fax'; known channels: email, sms"):
        backend_for(make_settings(), "fax")
    settings = make_settings().model_copy(update={"email_transport": "carrier-pigeon"})
    with pytest.raises(RegistryError, match=r"'carrier-pigeon'.*choose one of: outbox, smtp"):
        backend_for(settings, "email")


class Pigeon:
    """A third party's SMS backend: it keeps what it is handed."""

    name = "pigeon-sms"
    channel = "sms"
    carried: ClassVar[list[Envelope]] = []

    def deliver(self, envelope: Envelope) -> str:
        self.carried.append(envelope)
        return f"pigeon-{envelope.message_id}"


def test_a_registered_backend_is_what_the_setting_selects(make_settings: Callable[..., Settings]) -> None:
    # Given a backend registered under a transport name of its own
    register_backend("pigeon-sms", lambda settings: Pigeon(), channel="sms", transport="pigeon")
    # Then the setting accepts it, and the registry hands it out and lists it
    settings = make_settings(sms_transport="pigeon")
    check_settings(settings)
    backend = backend_for(settings, "sms")
    assert backend.deliver(sms_envelope(message_id=42)) == "pigeon-42"
    assert Pigeon.carried[-1].to == sms_envelope().to
    assert "pigeon" in transports("sms") and "pigeon" not in transports("email")


def test_a_transport_nobody_registered_fails_at_start_naming_the_setting(
    make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError, match=r"OUTREACH_SMS_TRANSPORT 'fax' is not one of the sms transports; "
                                          r"choose one of: aliyun, outbox, .*tencent, twilio"):
        check_settings(make_settings(sms_transport="fax"))


def test_a_plugin_registers_its_backend_through_an_entry_point(tmp_path: Path) -> None:
    # Given an installed package (a dist-info on the path) naming a register hook
    (tmp_path / "outreach_owl.py").write_text(
        "from outreach.channels import register_backend\n"
        "class Owl:\n    name = 'owl'\n    channel = 'email'\n"
        "    def deliver(self, envelope):\n        return 'owl-1'\n"
        "def register():\n    register_backend('owl', lambda settings: Owl(), channel='email')\n"
    )
    info = tmp_path / "outreach_owl-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outreach-owl\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[outreach.channels]\nowl = outreach_owl:register\n")
    # When a process of Outreach asks which email transports there are
    script = ("from outreach.channels import transports, backend_for\n"
              "from outreach.config import load_settings\n"
              "print(transports('email'))\n"
              "print(backend_for(load_settings(email_transport='owl'), 'email').deliver(None))\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OUTREACH_CONFIG": str(tmp_path / "none.toml")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # Then the plugin's backend is one of them, selected by the setting
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['outbox', 'owl', 'smtp']", "owl-1"]


def test_every_email_carries_its_id_where_each_esp_echoes_it_back() -> None:
    # So a provider's bounce or complaint finds the message even when it replaces the Message-ID
    message = build_email(email_envelope(message_id=42), from_address=SHOP_FROM)
    assert message["X-PM-Metadata-outreach_message_id"] == "42"
    assert json.loads(str(message["X-Mailgun-Variables"])) == {"outreach_message_id": "42"}
    assert json.loads(str(message["X-SMTPAPI"])) == {"unique_args": {"outreach_message_id": "42"}}
    assert message["X-SES-MESSAGE-TAGS"] == "outreach_message_id=42"

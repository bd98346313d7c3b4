"""Offers on the send path: every message of an offer rule carries a code of
its own, given once, never to a held-out or skipped customer, kept when the
message goes out again; a dry pool sends nothing without a code and says so."""

from __future__ import annotations

import random
import re
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import add_customer
from offer_helpers import (
    CODE_IN_TEXT,
    NOW,
    codes_by_message,
    delivered_emails,
    delivered_sms,
    generate_codes,
    lapsed,
    offer_rule,
    offer_shop,
    offer_templates,
    statuses,
)
from outreach.clock import utcnow
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.planning.launch import launch, plan_rule
from outreach.planning.preview import preview
from outreach.rules import RuleSet
from outreach.sending import janitor, queue, tokens
from outreach.sending.deliver import Sender
from outreach.store import campaigns, coupons, workers
from outreach.store.engine import transaction
from outreach.store.models import ConsentRecord, Coupon, Message, Order, Rule
from policy_factories import make_settings
from smtp_server import smtp_server

_CLICK = re.compile(r"/c/([A-Za-z0-9_.=-]+)")


def test_each_message_carries_its_own_code_from_plan_to_outbox(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given three lapsed customers with email consent, one with SMS consent only, and a pool of ten codes
    settings = make_settings(tmp_path, db_url, templates_dir=offer_templates(tmp_path))
    lapsed(engine, 3)
    with transaction(engine) as s:
        wang = add_customer(s, "wang", name="王小明", email=None, phone="+8613800000009", consent={"sms": "granted"})
        s.add(Order(external_id="wang-old", customer_id=wang.id, ordered_at=NOW - timedelta(days=40), amount=50))
    generate_codes(engine, "spring15", 10)
    # When the rule is launched (plan → in-process worker → file outbox)
    [result] = launch(settings, engine, [offer_rule(channels="[email, sms]")], now=NOW, simulated=True)
    # Then four messages went out, each with a different code of the pool
    assert result.planned == 4
    given = codes_by_message(engine)
    assert set(statuses(engine).values()) == {MessageStatus.SENT} and len(given) == 4
    assert len(set(given.values())) == 4 and all(CODE_IN_TEXT.fullmatch(c) for c in given.values())
    emails = delivered_emails(tmp_path / "outbox")
    assert len(emails) == 3
    for message_id, message in emails.items():
        code = given[message_id]
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        # … in the text the customer reads, with its terms (14 days from the send) …
        assert f"your code {code} takes 15% off until {(NOW + timedelta(days=14)).date()}" in " ".join(text.split())
        assert code in html and message["Subject"].endswith("15% off, just for you")
        # … and in the link that applies it, behind the click tracking
        targets = {tokens.read_click_token(settings, t)[1] for t in _CLICK.findall(html)}
        assert f"https://shop.example/redeem?code={code}" in targets
        # no other message's code is in it
        assert set(CODE_IN_TEXT.findall(text + html)) == {code}
    [sms] = delivered_sms(tmp_path / "outbox")
    with Session(engine) as s:
        sms_id = s.scalar(select(Message.id).where(Message.channel == Channel.SMS))
    assert sms["to"] == "+8613800000009" and CODE_IN_TEXT.findall(str(sms["body"])) == [given[sms_id]]
    with Session(engine) as s:
        assert coupons.pool_counts(s, today=NOW.date())[0].used == 4


def test_held_out_and_skipped_customers_take_no_code(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given 40 lapsed customers, half of them held out, and a pool of 40 codes
    settings = offer_shop(engine, db_url, tmp_path, customers=40, codes=40)
    result, queued = plan_rule(engine, offer_rule(holdout=50), now=NOW)
    assert result.held_out > 0 and result.planned > 1
    # And one planned customer unsubscribes before the worker gets to the message
    with Session(engine) as s:
        first = s.scalar(select(Message.customer_id).where(Message.id == queued[0][0]))
    with transaction(engine) as s:
        s.add(ConsentRecord(customer_id=first, channel=Channel.EMAIL, status=ConsentStatus.REVOKED,
                            source="unsubscribe", recorded_at=NOW + timedelta(minutes=1)))
    # When the queue is delivered
    ctx = queue.setup(settings, engine)
    queue.enqueue(ctx, queued, as_of=NOW)
    queue.drain(ctx)
    # Then exactly the sent messages hold codes: none for the control group, none for the skipped one
    by_status = statuses(engine)
    sent = {m for m, st in by_status.items() if st is MessageStatus.SENT}
    assert sorted(by_status.values()).count(MessageStatus.SKIPPED) == 1
    assert set(codes_by_message(engine)) == sent and len(sent) == result.planned - 1
    with Session(engine) as s:
        counts = coupons.pool_counts(s, today=NOW.date())[0]
    assert (counts.used, counts.free) == (len(sent), 40 - len(sent))
    assert result.planned + result.held_out == 40


def test_a_dry_pool_sends_what_it_can_reports_the_rest_and_sends_it_after_a_top_up(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given five lapsed customers and a pool of three codes
    settings = offer_shop(engine, db_url, tmp_path, customers=5, codes=3)
    # Then the preview says two would not be sent
    seen = preview(engine, offer_rule(), now=NOW, ruleset=RuleSet())
    assert (seen.would_send, seen.free_codes, seen.codes_short) == (5, 3, 2)
    # When the rule is launched
    launch(settings, engine, [offer_rule()], now=NOW, simulated=True)
    # Then three went out with a code each, and two were not sent, saying why
    by_status = statuses(engine)
    assert sorted(by_status.values()) == [MessageStatus.FAILED] * 2 + [MessageStatus.SENT] * 3
    emails = delivered_emails(tmp_path / "outbox")
    assert sorted(emails) == sorted(m for m, st in by_status.items() if st is MessageStatus.SENT)
    assert all(len(CODE_IN_TEXT.findall(e.get_body(("plain",)).get_content())) == 1 for e in emails.values())
    with Session(engine) as s:
        errors = s.scalars(select(Message.last_error).where(Message.status == MessageStatus.FAILED)).all()
        [status] = campaigns.status(s, now=utcnow(), rule="spring")
    assert all(e.startswith("no coupon code left in pool 'spring15'") for e in errors)
    assert (status.counts.get("no code"), status.counts.get("sent")) == (2, 3)
    # When the pool is topped up and the campaign retried
    generate_codes(engine, "spring15", 2)
    ctx = queue.setup(settings, engine)
    with transaction(engine) as s:
        again = campaigns.retry_failed(s, "spring", now=utcnow())
    queue.enqueue(ctx, again, as_of=NOW)
    queue.drain(ctx)
    # Then all five are sent, each with its own code
    assert set(statuses(engine).values()) == {MessageStatus.SENT}
    given = codes_by_message(engine)
    assert len(given) == 5 and len(set(given.values())) == 5
    assert len(delivered_emails(tmp_path / "outbox")) == 5


def test_a_message_tried_again_or_taken_back_from_a_dead_worker_keeps_its_code(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    [cid] = lapsed(engine, 1)
    generate_codes(engine, "spring15", 5)
    with smtp_server(refuse={"c000000@example.com": "451 4.3.0 try again later"}) as server:
        settings = make_settings(tmp_path, db_url, templates_dir=offer_templates(tmp_path), email_transport="smtp",
                                 smtp_host=server.host, smtp_port=server.port)
        _, queued = plan_rule(engine, offer_rule(), now=NOW)
        [message_id] = [m for m, _ in queued]
        # Given a first attempt the server refused for now (a retry is planned)
        assert Sender(settings, engine, worker_id="w1").deliver([message_id]).retried == 1
        [code] = codes_by_message(engine).values()
        # When it is tried again and goes through
        server.sink.refuse.clear()
        with transaction(engine) as s:
            s.get(Message, message_id).status = MessageStatus.QUEUED
        assert Sender(settings, engine, worker_id="w2").deliver([message_id]).sent == 1
        # And then its worker is presumed dead and the message taken back and sent once more
        long_ago = utcnow() - timedelta(minutes=5)
        with transaction(engine) as s:
            workers.beat(s, "w2", now=long_ago)
            m = s.get(Message, message_id)
            m.status, m.claimed_by, m.claimed_at = MessageStatus.SENDING, "w2", long_ago
        ctx = queue.setup(settings, engine)
        assert janitor.maintain(ctx).recovered == 1
        queue.drain(ctx)
        received = [r.parsed().get_body(("plain",)).get_content() for r in server.received]
    # Then both copies carry the code it was given first, and the pool gave no other
    assert [CODE_IN_TEXT.findall(text) for text in received] == [[code], [code]]
    assert codes_by_message(engine) == {message_id: code}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).where(Coupon.given_at.is_not(None))) == 1
        assert s.get(Message, message_id).customer_id == cid


def test_the_broker_handing_batches_over_three_times_gives_each_message_one_code(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = offer_shop(engine, db_url, tmp_path, customers=12, codes=30)
    _, queued = plan_rule(engine, offer_rule(), now=NOW)
    ctx = queue.setup(settings, engine)
    for _ in range(3):
        queue.enqueue(ctx, queued, as_of=NOW)
    queue.drain(ctx, threads=4)
    given = codes_by_message(engine)
    assert sorted(given) == sorted(m for m, _ in queued) and len(set(given.values())) == 12
    with Session(engine) as s:
        assert s.scalar(select(func.count()).where(Coupon.given_at.is_not(None))) == 12
        assert set(s.scalars(select(Message.attempts))) == {1}


def test_workers_giving_codes_from_one_pool_at_once_never_share_one(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given 160 queued messages and a pool of 120 codes (the campaign is not to pause itself
    # when a worker sees mostly "no code" failures: what is tested here is giving codes)
    settings = offer_shop(engine, db_url, tmp_path, customers=160, codes=120, auto_pause_after=10_000)
    _, queued = plan_rule(engine, offer_rule(), now=NOW)
    ids = [m for m, _ in queued]
    # When four workers take every message at once, each in its own order
    errors: list[BaseException] = []

    def work(n: int) -> None:
        mine = list(ids)
        random.Random(n).shuffle(mine)
        try:
            Sender(settings, engine, worker_id=f"w{n}").deliver(mine, as_of=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Then 120 went out, each with a code no other message has, and 40 were not sent for want of one
    by_status = statuses(engine)
    sent = {m for m, st in by_status.items() if st is MessageStatus.SENT}
    given = codes_by_message(engine)
    with Session(engine) as s:
        assert s.scalar(select(Rule.paused_at)) is None
    assert len(sent) == 120 and set(given) == sent and len(set(given.values())) == 120
    assert sorted(by_status.values()).count(MessageStatus.FAILED) == 40
    emails = delivered_emails(tmp_path / "outbox")
    assert {m: CODE_IN_TEXT.findall(e.get_body(("plain",)).get_content()) for m, e in emails.items()} == {
        m: [c] for m, c in given.items()}


def test_after_the_offers_last_day_nothing_is_planned_and_nothing_waiting_is_sent(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given an offer that ends on June 2nd, planned on June 1st for two customers
    settings = offer_shop(engine, db_url, tmp_path, customers=2, codes=5)
    rule = offer_rule(terms="valid_days: 14, expires: 2026-06-02")
    _, queued = plan_rule(engine, rule, now=NOW)
    assert len(queued) == 2
    # When the worker only gets to them on June 3rd
    Sender(settings, engine, worker_id="w1").deliver([m for m, _ in queued], as_of=NOW + timedelta(days=2))
    # Then they are not sent, the reason says why, and no code was used
    with Session(engine) as s:
        assert set(s.execute(select(Message.status, Message.last_error)).all()) == {
            (MessageStatus.FAILED, "offer ended on 2026-06-02: not sent")}
    assert codes_by_message(engine) == {}
    # And a launch after that day plans nothing, and says so
    [late] = launch(settings, engine, [rule], now=NOW + timedelta(days=2), simulated=True)
    assert (late.run_id, late.planned, late.note) == (None, 0, "the offer ended on 2026-06-02: nothing planned")


def test_rules_sharing_a_pool_each_promise_their_own_days(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given two rules with the same discount from one pool, one promising 14 days and one 3
    settings = offer_shop(engine, db_url, tmp_path, customers=6, codes=10)
    long = offer_rule(name="long", extra="segment: {field: external_id, lt: c000003}")
    short = offer_rule(name="short", terms="valid_days: 3", extra="segment: {field: external_id, gte: c000003}")
    # When both are sent at once
    launch(settings, engine, [long, short], now=NOW, simulated=True)
    # Then six different codes went out, each good for what its rule promised
    with Session(engine) as s:
        given = s.execute(select(Rule.name, Coupon.code, Coupon.expires_on)
                          .join(Message, Message.id == Coupon.message_id).join(Rule, Rule.id == Message.rule_id)).all()
    assert len({code for _, code, _ in given}) == 6
    assert sorted((rule, last) for rule, _, last in given) == [
        ("long", (NOW + timedelta(days=14)).date())] * 3 + [("short", (NOW + timedelta(days=3)).date())] * 3

"""The preference center, over real HTTP on both databases: what a customer
turns off there stops planning at once and stops messages already queued at
send time, with the reason; safe methods and forged forms change nothing."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import NOW
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.planning.explain import explain
from outreach.planning.preview import preview
from outreach.rules import RuleSet
from outreach.sending import tokens
from outreach.store.models import (
    ConsentRecord,
    CurrentConsent,
    MarketingPause,
    PreferenceRecord,
    Suppression,
    TopicOptOut,
)
from preference_helpers import (
    ARRIVAL,
    Clock,
    deliver,
    form_of,
    lapsed_customer,
    page_path,
    plan,
    planned_for,
    rule,
    settings_for,
    webhooks,
)

LATER = NOW + timedelta(days=1)


def offer_queued(engine: Engine) -> list[int]:
    """Ada (email and SMS consent, lapsed) has an offer queued."""
    lapsed_customer(engine)
    queued = plan(engine, rule("winback-a", topic="offers"), NOW)
    assert len(queued) == 1
    return queued


def snapshot(engine: Engine) -> tuple[list[tuple[object, ...]], ...]:
    """Everything a preference change could touch."""
    with Session(engine) as s:
        return (
            [tuple(r) for r in s.execute(select(ConsentRecord.channel, ConsentRecord.status, ConsentRecord.source))],
            [tuple(r) for r in s.execute(select(Suppression.channel, Suppression.address, Suppression.reason))],
            [tuple(r) for r in s.execute(select(TopicOptOut.topic))],
            [tuple(r) for r in s.execute(select(MarketingPause.paused_until))],
            [tuple(r) for r in s.execute(select(PreferenceRecord.kind, PreferenceRecord.value))],
        )


def test_a_topic_turned_off_is_not_planned_and_a_queued_message_of_it_is_skipped(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given an offer already queued for Ada
    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    with webhooks(engine, settings, Clock()) as http:
        # When she opens her preference page from it (nothing changes) and turns offers off
        page = http.get(page_path(settings, queued[0]))
        assert page.status_code == 200 and "Offers and recommendations" in page.text
        form = form_of(page.text)
        assert form["topic_offers"] == "on" and form["topic_care"] == "on"
        del form["topic_offers"]
        saved = http.post(page_path(settings, queued[0]), data=form)
    assert saved.status_code == 200 and "Your preferences are saved." in saved.text
    assert 'name="topic_offers" value="on">' in saved.text  # shown unticked now
    # Then the queued offer is skipped at send time, saying why
    assert deliver(settings, engine, queued, LATER) == {
        queued[0]: (MessageStatus.SKIPPED, "topic offers turned off by the customer")}
    # And no new offer is planned for her, while care messages still are
    assert plan(engine, rule("winback-b", topic="offers"), LATER) == []
    assert planned_for(engine, plan(engine, rule("checkin", topic="care"), LATER)) == {"ada": "email"}
    assert preview(engine, rule("winback-c", topic="offers"), now=LATER, ruleset=RuleSet()).turned_off == 1
    told = explain(engine, rule("winback-c", topic="offers"), customer="ada", now=LATER, ruleset=RuleSet())
    assert (told.decision, told.would_send) == (
        "the customer's own choice: topic offers turned off by the customer", False)
    # And the change is recorded with its evidence: how, from where, what the page said
    with Session(engine) as s:
        record = s.scalars(select(PreferenceRecord)).one()
    assert (record.kind, record.name, record.value, record.source) == ("topic", "offers", "off", "preference-center")
    assert f"link of message {queued[0]}" in (record.evidence or "")
    assert "Offers and recommendations: Discounts" in (record.evidence or "")
    assert record.recorded_at == ARRIVAL


def test_a_break_holds_every_marketing_message_until_its_date_but_not_transactional_ones(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    with webhooks(engine, settings, Clock()) as http:
        form = form_of(http.get(page_path(settings, queued[0])).text)
        assert form["pause"] == "none"
        saved = http.post(page_path(settings, queued[0]), data={**form, "pause": "30"})
        assert saved.status_code == 200
        # The page now offers to keep the break or end it
        assert form_of(saved.text)["pause"] == "keep"
    until = ARRIVAL + timedelta(days=30)
    # A queued offer is skipped with the date; a transactional message still goes
    assert deliver(settings, engine, queued, LATER)[queued[0]] == (
        MessageStatus.SKIPPED, f"paused by the customer until {until:%Y-%m-%d %H:%M} UTC")
    receipt = plan(engine, rule("order-care", transactional=True), LATER)
    assert deliver(settings, engine, receipt, LATER) == {receipt[0]: (MessageStatus.SENT, "")}
    # Nothing marketing is planned during the break, of any topic or none
    for name, topic in (("winback-b", "offers"), ("checkin", "care"), ("no-topic", None)):
        assert plan(engine, rule(name, topic=topic), until - timedelta(hours=1)) == []
    # And after it, marketing is planned again
    assert planned_for(engine, plan(engine, rule("winback-c", topic="offers"), until + timedelta(hours=1))) == {
        "ada": "email"}


def test_ending_a_break_early_lets_marketing_through_again(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    clock = Clock()
    with webhooks(engine, settings, clock) as http:
        path = page_path(settings, queued[0])
        http.post(path, data={**form_of(http.get(path).text), "pause": "60"})
        clock.now = ARRIVAL + timedelta(days=2)
        ended = http.post(path, data={**form_of(http.get(path).text), "pause": "none"})
    assert ended.status_code == 200
    with Session(engine) as s:
        assert s.scalar(select(MarketingPause)) is None
        assert [r.value for r in s.scalars(select(PreferenceRecord).order_by(PreferenceRecord.id))] == [
            f"until {(ARRIVAL + timedelta(days=60)).isoformat()}", "resumed"]
    assert planned_for(engine, plan(engine, rule("winback-b", topic="offers"), clock.now)) == {"ada": "email"}


def test_a_channel_turned_off_is_an_unsubscribe_with_the_page_as_evidence(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    with webhooks(engine, settings, Clock()) as http:
        form = form_of(http.get(page_path(settings, queued[0])).text)
        assert form["channels_shown"] == "email sms" and form["channel_email"] == "on"
        del form["channel_email"]
        assert http.post(page_path(settings, queued[0]), data=form).status_code == 200
        again = http.get(page_path(settings, queued[0]))
    assert "Email to ada@example.com is off." in again.text and "Email me a link" in again.text
    with Session(engine) as s:
        latest = s.scalars(select(ConsentRecord).where(ConsentRecord.channel == Channel.EMAIL)
                           .order_by(ConsentRecord.id.desc())).first()
        assert latest is not None and latest.status is ConsentStatus.REVOKED
        assert latest.source == "preference-center" and "unticked 'Email' (ada@example.com)" in (latest.evidence or "")
        assert s.scalars(select(Suppression.reason)).all() == ["unsubscribed"]
    # The queued email is skipped; the next campaign reaches her by SMS, the channel she kept
    assert deliver(settings, engine, queued, LATER)[queued[0]][0] is MessageStatus.SKIPPED
    assert planned_for(engine, plan(engine, rule("winback-b", topic="offers"), LATER)) == {"ada": "sms"}


def test_safe_methods_forged_and_stale_forms_change_nothing(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    path = page_path(settings, queued[0])
    clock = Clock()
    with webhooks(engine, settings, clock) as http:
        form = form_of(http.get(path).text)
        for field in ("topic_offers", "topic_care", "topic_news", "topic_feedback", "channel_email", "channel_sms"):
            form.pop(field)
        before = snapshot(engine)
        # A mail scanner's HEAD and OPTIONS, and GETs with the form's fields as a query
        assert http.head(path).status_code == 200
        assert http.request("OPTIONS", path).status_code == 405
        assert http.get(path, params={**form, "pause": "90"}).status_code == 200
        assert http.head(path + "/resubscribe").status_code == 405
        # A POST without the page's nonce, with another page's, with a forged one, or a day late
        other = tokens.form_nonce(settings, queued[0] + 1, now=clock())
        for nonce in ("", other, form["nonce"][:-2] + "xx"):
            refused = http.post(path, data={**form, "nonce": nonce})
            assert refused.status_code == 403 and "out of date" in refused.text
        clock.now = ARRIVAL + timedelta(hours=25)
        assert http.post(path, data=form).status_code == 403
        clock.now = ARRIVAL
        # A break the page does not offer, and a forged page link
        assert http.post(path, data={**form, "pause": "3650"}).status_code == 400
        assert http.get(path[:-3] + "abc").status_code == 400
        assert http.post(path[:-3] + "abc", data=form).status_code == 400
        assert snapshot(engine) == before
        # While the page's own form, sent in time, does change things
        assert http.post(path, data=form).status_code == 200
    assert snapshot(engine) != before


def test_every_email_links_to_the_page_and_the_unsubscribe_page_too(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    lapsed_customer(engine)
    queued = plan(engine, rule("winback-a", topic="offers", channels="[email]"), NOW)
    deliver(settings, engine, queued, NOW)
    mail = email.message_from_bytes((tmp_path / "outbox" / "email" / f"{queued[0]}.eml").read_bytes(),
                                    policy=email.policy.default)
    link = tokens.preferences_url(settings, queued[0])
    # In the text and the HTML part, not rewritten into a tracked click
    for part in ("plain", "html"):
        assert link in mail.get_body((part,)).get_content(), part
    unsubscribe = tokens.unsubscribe_url(settings, queued[0]).removeprefix(settings.public_url)
    with webhooks(engine, settings, Clock()) as http:
        assert link in http.get(unsubscribe).text
        assert link in http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).text
        with Session(engine) as s:
            assert s.scalar(select(CurrentConsent.status).where(CurrentConsent.channel == Channel.EMAIL)) \
                is ConsentStatus.REVOKED


@pytest.mark.parametrize("locale", ["zh_CN"])
def test_the_page_speaks_the_customers_language(engine: Engine, db_url: str, tmp_path: Path, locale: str) -> None:
    settings = settings_for(tmp_path, db_url)
    lapsed_customer(engine, "wang", locale=locale, name="王小明")
    queued = plan(engine, rule("winback-a", topic="offers"), NOW)
    with webhooks(engine, settings, Clock()) as http:
        page = http.get(page_path(settings, queued[0]))
        form = form_of(page.text)
        saved = http.post(page_path(settings, queued[0]), data={**form, "pause": "30"})
    assert '<html lang="zh-CN">' in page.text and "订阅偏好设置" in page.text and "优惠与推荐" in page.text
    # The end of a break is a date in the customer's own time zone (Shanghai)
    assert "保持暂停至 2026年7月1日" in saved.text and "您的设置已保存。" in saved.text


def test_turning_things_off_while_the_database_is_busy_is_never_lost(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    from outreach.store import claims
    from test_optout_inbox import database_busy, eventually

    settings, queued = settings_for(tmp_path, db_url), offer_queued(engine)
    with webhooks(engine, settings, Clock()) as http:
        form = form_of(http.get(page_path(settings, queued[0])).text)
        del form["topic_offers"]
        with database_busy(engine):
            # Given the database is held by a long write, when Ada turns offers off and takes a break
            saved = http.post(page_path(settings, queued[0]), data={**form, "pause": "30"})
            assert saved.status_code == 200
            assert 'name="topic_offers" value="on">' in saved.text  # the page shows what she chose
            # Then a worker's re-check already holds her queued offer back
            with engine.connect() as conn:
                [row] = claims.load_claimed(conn, queued)
            assert row.refusal(LATER) == "topic offers turned off by the customer"
            if engine.dialect.name == "sqlite":  # kept in the inbox, said so
                assert "take effect within a minute" in saved.text
        # And once the database is free, both are recorded, at the time they arrived
        assert eventually(lambda: snapshot(engine)[3] == [(ARRIVAL + timedelta(days=30),)])
    assert snapshot(engine)[2] == [("offers",)]

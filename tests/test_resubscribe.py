"""Coming back needs new evidence: double opt-in by email, over real HTTP on
both databases. Only the confirmation link's POST grants consent again; a
scanner's GET, an expired, forged or replayed link, and a fourth request in
a day change nothing."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from factories import NOW
from outreach.config import Settings
from outreach.domain import Channel, ConsentStatus
from outreach.sending import tokens
from outreach.store.engine import transaction
from outreach.store.models import ConsentConfirmation, ConsentRecord, Customer, Suppression
from preference_helpers import (
    ARRIVAL,
    Clock,
    form_of,
    lapsed_customer,
    page_path,
    plan,
    planned_for,
    rule,
    settings_for,
    webhooks,
)
from test_preferences import snapshot


def unsubscribed(engine: Engine, settings: Settings, http: httpx.Client) -> int:
    """Ada got an offer and unsubscribed with its one-click link; the offer's id."""
    lapsed_customer(engine, consent={"email": "granted"})
    message_id = plan(engine, rule("winback-a", topic="offers", channels="[email]"), NOW)[0]
    unsubscribe = tokens.unsubscribe_url(settings, message_id).removeprefix(settings.public_url)
    assert http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    return message_id


def ask(http: httpx.Client, settings: Settings, message_id: int) -> httpx.Response:
    """Press the page's "email me a link" button (its own form, with the page's nonce)."""
    page = http.get(page_path(settings, message_id)).text
    nonce = re.search(r'<form id="resubscribe"[^>]*><input type="hidden" name="nonce" value="([^"]+)"', page)
    assert nonce, "the page offers no way back to email"
    return http.post(page_path(settings, message_id) + "/resubscribe", data={"nonce": nonce.group(1),
                                                                           "channel": "email"})


def confirmation_mails(tmp_path: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted((tmp_path / "outbox" / "email").glob("-*.eml"))]


def link_in(mail: email.message.EmailMessage, settings: Settings) -> str:
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(re.escape(settings.public_url) + r"/r/\S+", text)
    assert found, text
    return found.group(0).removeprefix(settings.public_url)


def email_consent(engine: Engine) -> ConsentStatus | None:
    with Session(engine) as s:
        return s.scalars(select(ConsentRecord.status).where(ConsentRecord.channel == Channel.EMAIL)
                         .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())).first()


def test_double_opt_in_brings_email_back_with_new_evidence(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    clock = Clock()
    with webhooks(engine, settings, clock) as http:
        offer = unsubscribed(engine, settings, http)
        assert email_consent(engine) is ConsentStatus.REVOKED
        # When Ada asks on her preference page to have email back
        sent = ask(http, settings, offer)
        assert sent.status_code == 200 and "Check your inbox" in sent.text
        # Then a confirmation goes to the address on file — and nothing else changed yet
        [mail] = confirmation_mails(tmp_path)
        assert mail["To"] == "ada@example.com" and mail["Subject"] == "Confirm: turn our email back on"
        assert email_consent(engine) is ConsentStatus.REVOKED
        link = link_in(mail, settings)
        # A mail scanner's GET and HEAD of the link only ask
        before = snapshot(engine)
        question = http.get(link)
        assert question.status_code == 200 and "Yes, email me again" in question.text
        assert http.head(link).status_code == 200 and http.request("OPTIONS", link).status_code == 405
        assert snapshot(engine) == before
        # When she confirms
        clock.now = ARRIVAL + timedelta(hours=1)
        done = http.post(link)
        assert done.status_code == 200 and "Email is on again" in done.text
        # Then consent is granted again, with the evidence, and her opt-out suppression lifted
        assert email_consent(engine) is ConsentStatus.GRANTED
        with Session(engine) as s:
            grant = s.scalars(select(ConsentRecord).order_by(ConsentRecord.id.desc())).first()
            assert grant is not None and grant.source == "double-opt-in"
            assert "emailed to ada@example.com" in (grant.evidence or "")
            assert "You agree to receive our email again" in (grant.evidence or "")
            assert grant.recorded_at == clock.now
            assert s.scalar(select(Suppression)) is None
        # And a replay of the link is refused and changes nothing
        before = snapshot(engine)
        replay = http.post(link)
        assert replay.status_code == 409 and "used already" in replay.text
        assert http.get(link).status_code == 409
        assert snapshot(engine) == before
    # And the next campaign reaches her by email again
    assert planned_for(engine, plan(engine, rule("winback-b", topic="offers"), clock.now)) == {"ada": "email"}


def test_expired_forged_and_changed_address_links_change_nothing(engine: Engine, db_url: str,
                                                                 tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    clock = Clock()
    with webhooks(engine, settings, clock) as http:
        offer = unsubscribed(engine, settings, http)
        ask(http, settings, offer)
        ask(http, settings, offer)
        first, second = (link_in(m, settings) for m in confirmation_mails(tmp_path))
        before = snapshot(engine)
        # A forged link
        assert http.post(first[:-4] + "abcd").status_code == 400
        assert http.post(tokens.confirm_url(settings, 999).removeprefix(settings.public_url)).status_code == 400
        # The address on file changed since the link was sent
        with transaction(engine) as s:
            s.execute(update(Customer).values(email="ada@new.example"))
        assert http.post(second).status_code == 409
        with transaction(engine) as s:
            s.execute(update(Customer).values(email="ada@example.com"))
        # 48 hours later, the link has expired
        clock.now = ARRIVAL + timedelta(hours=48, minutes=1)
        expired = http.post(first)
        assert expired.status_code == 410 and "expired" in expired.text
        assert http.get(first).status_code == 410
        assert snapshot(engine) == before
        with Session(engine) as s:
            assert s.scalars(select(ConsentConfirmation.confirmed_at)).all() == [None, None]


def test_confirmation_emails_are_rate_limited_per_customer(engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    clock = Clock()
    with webhooks(engine, settings, clock) as http:
        offer = unsubscribed(engine, settings, http)
        assert [ask(http, settings, offer).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert len(confirmation_mails(tmp_path)) == 3
        # A day later, she may ask again
        clock.now = ARRIVAL + timedelta(hours=24, minutes=1)
        assert ask(http, settings, offer).status_code == 200
        assert len(confirmation_mails(tmp_path)) == 4


def test_no_confirmation_to_a_bounced_address_or_for_email_already_on(engine: Engine, db_url: str,
                                                                      tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    with webhooks(engine, settings, Clock()) as http:
        offer = unsubscribed(engine, settings, http)
        with transaction(engine) as s:  # the address bounced since
            s.execute(update(Suppression).values(reason="hard bounce"))
        page = http.get(page_path(settings, offer)).text
        assert "We cannot reach you at ada@example.com" in page and "Email me a link" not in page
        nonce = form_of(page)["nonce"]
        refused = http.post(page_path(settings, offer) + "/resubscribe", data={"nonce": nonce})
        assert refused.status_code == 409
        # SMS comes back by a START reply from the number, which the page says
        assert "To receive SMS again, reply START to one of our text messages." in page
    assert confirmation_mails(tmp_path) == []


def test_a_confirmation_while_the_database_is_busy_asks_to_try_again(engine: Engine, db_url: str,
                                                                      tmp_path: Path) -> None:
    from test_optout_inbox import database_busy

    settings = settings_for(tmp_path, db_url)
    with webhooks(engine, settings, Clock()) as http:
        ask(http, settings, unsubscribed(engine, settings, http))
        link = link_in(confirmation_mails(tmp_path)[0], settings)
        with database_busy(engine):
            answer = http.post(link)
            if engine.dialect.name == "sqlite":  # the writer lock is held: a clear "try again", nothing half done
                assert answer.status_code == 503 and "try again in a minute" in answer.text
            else:  # PostgreSQL writes beside the other writer
                assert answer.status_code == 200
        if engine.dialect.name == "sqlite":
            assert email_consent(engine) is ConsentStatus.REVOKED
            assert http.post(link).status_code == 200  # the same link works once the database is free
        assert email_consent(engine) is ConsentStatus.GRANTED

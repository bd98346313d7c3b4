"""Surveys over real HTTP: an NPS answer by SMS reply or by a link in the
message, recorded against the message that asked; the report's NPS and
satisfaction per rule and customer type, checked against a plain-Python
computation on both databases."""

# The webhook tests' fixtures (``settings``, ``client``, ``sent``) are imported.
# ruff: noqa: F811

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from factories import NOW, add_customer
from outreach.config import Settings, load_settings
from outreach.domain import Channel, CustomerType, EventType, MessageStatus
from outreach.reporting.surveys import survey_results
from outreach.sending import tokens
from outreach.sending.render import Renderer
from outreach.store import surveys
from outreach.store.engine import transaction
from outreach.store.models import Message, Rule, SurveyAnswer, TrackingEvent
from test_campaign_control import cli
from test_webhooks import ARRIVAL, client, count, sent, settings, stop_form, twilio_post  # noqa: F401


def asks(engine: Engine, kind: str | None) -> None:
    """The fixture's rule asks for this survey (and its SMS went out an hour ago)."""
    with transaction(engine) as s:
        s.execute(update(Rule).values(definition={"survey": kind} if kind else {}))
        s.execute(update(Message).values(sent_at=ARRIVAL - timedelta(hours=1)))


def answers(engine: Engine) -> list[tuple[int, str, int, str | None, str]]:
    with Session(engine) as s:
        return [tuple(r) for r in s.execute(select(SurveyAnswer.message_id, SurveyAnswer.kind, SurveyAnswer.score,
                                                   SurveyAnswer.comment, SurveyAnswer.source)
                                            .order_by(SurveyAnswer.id))]  # type: ignore[misc]


def test_an_sms_reply_of_a_score_answers_the_survey_sms_it_follows(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    asks(engine, "nps")
    # When Wang replies "9" to the survey SMS, then "10分"
    assert twilio_post(client, settings, "/webhooks/twilio/inbound", stop_form(Body="9")).status_code == 200
    assert answers(engine) == [(sent["wang"], "nps", 9, None, "twilio")]
    assert twilio_post(client, settings, "/webhooks/twilio/inbound",
                       stop_form(Body=" 10分 ", MessageSid="SM2")).status_code == 200
    # Then one answer for the message, the latest; the replies are kept as replies too
    assert answers(engine) == [(sent["wang"], "nps", 10, None, "twilio")]
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.REPLY) == 2
    # And a score off the scale, or from a number no survey went to, answers nothing
    assert twilio_post(client, settings, "/webhooks/twilio/inbound",
                       stop_form(Body="11", MessageSid="SM3")).status_code == 200
    assert twilio_post(client, settings, "/webhooks/twilio/inbound",
                       stop_form(Body="3", From="+8613900000009", MessageSid="SM4")).status_code == 200
    assert answers(engine) == [(sent["wang"], "nps", 10, None, "twilio")]


def test_a_score_reply_to_a_message_that_asked_nothing_is_only_a_reply(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    asks(engine, None)
    assert twilio_post(client, settings, "/webhooks/twilio/inbound", stop_form(Body="9")).status_code == 200
    assert answers(engine) == []
    assert count(engine, TrackingEvent, TrackingEvent.type == EventType.REPLY) == 1


def test_a_survey_link_asks_on_get_and_records_on_post(
    engine: Engine, settings: Settings, client: httpx.Client, sent: dict[str, int]
) -> None:
    asks(engine, "nps")
    path = tokens.survey_url(settings, sent["ada"], 7).removeprefix(settings.public_url)
    # Given a mail scanner prefetches the link, or the customer opens it: a page that asks, nothing stored
    page = client.get(path)
    assert page.status_code == 200 and "7" in page.text and "<form" in page.text
    assert client.head(path).status_code == 200
    assert answers(engine) == []
    # When the customer sends the answer, with a comment
    done = client.post(path, data={"comment": "Lovely tea,\x00 slow delivery"})
    assert done.status_code == 200 and "Thank you" in done.text
    assert answers(engine) == [(sent["ada"], "nps", 7, "Lovely tea,  slow delivery", "survey-link")]
    # And a tampered link, or a score off the rule's scale, is refused and stores nothing more
    assert client.get(path[:-3] + "abc").status_code == 400
    asks(engine, "satisfaction")
    off_scale = tokens.survey_url(settings, sent["ada"], 9).removeprefix(settings.public_url)
    assert client.post(off_scale, data={}).status_code == 400
    assert len(answers(engine)) == 1


def test_templates_get_answer_links_for_their_own_message(tmp_path: Path) -> None:
    (tmp_path / "ask").mkdir()
    (tmp_path / "ask" / "sms.txt").write_text("How likely are you to recommend us? 10: {{ survey_url(10) }}")
    config = load_settings(templates_dir=tmp_path, secret_key="s", public_url="https://t.example")
    from outreach.store.claims import Person

    person = Person(external_id="c", name="Ada", email=None, phone="+8613800000001", locale="en",
                    customer_type=CustomerType.RETAIL, attributes={}, tags=[], birthday=None)
    text = Renderer(settings=config).render(template="ask", channel=Channel.SMS, customer=person, message_id=42,
                                            rule={"name": "r", "description": ""}).text
    token = text.rsplit("/s/", 1)[1]
    assert tokens.read_survey_token(config, token) == (42, 10)


def oracle(rows: list[tuple[str, str, str, int]]) -> dict[tuple[str, str, str], tuple[int, float]]:
    """(rule, customer type or all, kind) → (answers, NPS or mean), in plain Python."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for rule, customer_type, kind, score in rows:
        for key in ((rule, customer_type, kind), (rule, "all", kind)):
            groups.setdefault(key, []).append(score)
    result = {}
    for (rule, customer_type, kind), scores in groups.items():
        if kind == "nps":
            value = round(100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores), 1)
        else:
            value = round(sum(scores) / len(scores), 2)
        result[(rule, customer_type, kind)] = (len(scores), value)
    return result


@pytest.mark.parametrize("seed", [1, 2])
def test_the_survey_report_matches_a_plain_python_computation(
    engine: Engine, db_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    truth = []
    with transaction(engine) as s:
        rules = []
        for name, kind in (("nps-after-order", "nps"), ("csat-after-delivery", "satisfaction")):
            rule = Rule(name=name, path=f"rules/{name}.yaml", definition={"survey": kind}, checksum="x",
                        updated_at=NOW)
            s.add(rule)
            s.flush()
            rules.append((rule, kind))
        for i in range(60):
            customer_type = rng.choice(list(CustomerType))
            customer = add_customer(s, f"c{i}", customer_type=customer_type)
            rule, kind = rng.choice(rules)
            message = Message(rule_id=rule.id, customer_id=customer.id, channel=Channel.EMAIL, occurrence_key="k",
                              status=MessageStatus.SENT, planned_at=NOW, sent_at=NOW, attempts=1)
            s.add(message)
            s.flush()
            score = rng.choice(list(surveys.SCALES[kind]))
            surveys.record_answer(s, message_id=message.id, customer_id=customer.id, rule_id=rule.id, kind=kind,
                                  score=score, source="test", answered_at=NOW)
            truth.append((rule.name, customer_type.value, kind, score))
    expected = oracle(truth)
    got = {(r.rule, r.customer_type, r.kind): (r.answers, r.score) for r in survey_results(engine)}
    assert got == expected
    # And the command line says the same
    done = cli(tmp_path, db_url, "report", "--surveys", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert {(r["rule"], r["customer_type"], r["kind"]): (r["answers"], r["score"])
            for r in json.loads(done.stdout)} == expected

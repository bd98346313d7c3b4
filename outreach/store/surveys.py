"""Survey answers: NPS (0–10) and satisfaction (1–5), each against the message that asked.

A rule that asks (``survey: nps`` or ``survey: satisfaction``) gets its
answers two ways: an SMS reply that is just the score (``9``), counted for
the latest survey SMS sent to that number in the last ``SMS_ANSWER_DAYS``
days, and a link in an email or SMS (``{{ survey_url(9) }}``), whose page
asks before it records (mail scanners follow links). One answer per
message: a second one replaces the first.

NPS is the share of promoters (9–10) minus the share of detractors (0–6),
in points from −100 to 100; satisfaction is reported as its mean and the
share of 4s and 5s.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.domain import Channel, MessageStatus
from outreach.store import dialect
from outreach.store.answers import SCALES, SurveyAnswer
from outreach.store.models import Message, Rule

__all__ = ["SCALES", "SurveyAnswer", "answer_by_sms", "record_answer", "sms_score", "survey_of"]
#: An SMS reply counts as the answer to a survey SMS sent at most this long before.
SMS_ANSWER_DAYS = 7
#: What an SMS answer may look like: the score, perhaps with 分 (points) after it.
SMS_SCORE = re.compile(r"^\s*(\d{1,2})\s*分?\s*$")
#: Survey SMS looked at per reply (the latest few to that number).
RECENT_CANDIDATES = 20
COMMENT_MAX = 2000


def survey_of(definition: dict[str, Any] | None) -> str | None:
    """The survey kind a rule's stored definition asks, if any."""
    kind = (definition or {}).get("survey")
    return kind if kind in SCALES else None


def record_answer(session: Session, *, message_id: int, customer_id: int, rule_id: int, kind: str, score: int,
                  source: str, answered_at: datetime, comment: str | None = None) -> None:
    """Store (or replace) the answer to ``message_id``; ValueError for a score off the scale."""
    if score not in SCALES[kind]:
        scale = SCALES[kind]
        raise ValueError(f"{score} is not a {kind} score (from {scale.start} to {scale.stop - 1})")
    values = {"customer_id": customer_id, "rule_id": rule_id, "kind": kind, "score": score,
              "comment": (comment or "").strip()[:COMMENT_MAX] or None, "source": source, "answered_at": answered_at}
    stmt = dialect.insert(session, SurveyAnswer).values(message_id=message_id, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["message_id"], set_=values))


def sms_score(body: str) -> int | None:
    match = SMS_SCORE.match(body)
    return int(match.group(1)) if match else None


def answer_by_sms(session: Session, *, phone: str, score: int, at: datetime, source: str) -> int | None:
    """Record ``score`` for the latest survey SMS sent to ``phone`` whose scale
    it fits; the message's id, or None when no survey is waiting for it."""
    candidates = session.execute(
        select(Message.id, Message.customer_id, Message.rule_id, Rule.definition)
        .join(Rule, Rule.id == Message.rule_id)
        .where(Message.channel == Channel.SMS, Message.to_address == phone, Message.status == MessageStatus.SENT,
               Message.sent_at >= at - timedelta(days=SMS_ANSWER_DAYS), Message.sent_at <= at)
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(RECENT_CANDIDATES)
    ).all()
    for message_id, customer_id, rule_id, definition in candidates:
        kind = survey_of(definition)
        if kind is not None and score in SCALES[kind]:
            record_answer(session, message_id=message_id, customer_id=customer_id, rule_id=rule_id, kind=kind,
                          score=score, source=source, answered_at=at)
            return int(message_id)
    return None

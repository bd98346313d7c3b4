"""What an SMS reply means, whichever provider brings it (Twilio, Aliyun, Tencent).

STOP words opt the number out at once (SMS consent revoked, the number
suppressed; through the durable opt-out inbox on SQLite), START words opt it
back in with the reply kept as evidence, HELP words are answered where the
provider lets us answer (Twilio). Anything else is recorded as a reply — and
a reply that is just a score answers the latest survey SMS it fits. A reply
is matched on its words after NFKC normalisation (full-width ``ＴＤ`` is
``TD``) and upper-casing.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select

from outreach.domain import Channel, EventType
from outreach.store import optouts, responses, surveys
from outreach.store.engine import transaction
from outreach.store.models import Customer

#: Replies that mean "stop" (Twilio's standard keywords, and the Chinese 退订 / TD).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "TD", "退订"})
#: China's marketing SMS end "拒收请回复R" (reply R to refuse): through the Chinese providers R stops too.
CHINA_STOP_WORDS = STOP_WORDS | {"R", "拒收"}
#: Replies that mean "send me messages again", and "what is this?" (Twilio's standard keywords).
START_WORDS = frozenset({"START", "UNSTOP", "YES", "订阅"})
HELP_WORDS = frozenset({"HELP", "INFO", "帮助"})
HELP_TEXT = {
    "en": "Reply STOP to unsubscribe, START to subscribe again.",
    "zh": "回复TD退订，回复START重新订阅。",
}

Meaning = Literal["stop", "start", "help", "reply"]


def keyword(text: str, *, stop_words: frozenset[str] = STOP_WORDS) -> Meaning:
    word = unicodedata.normalize("NFKC", text).strip().upper()
    if word in stop_words:
        return "stop"
    if word in START_WORDS:
        return "start"
    return "help" if word in HELP_WORDS else "reply"


def act_on_reply(engine: Engine, *, phone: str, text: str, source: str, payload: dict[str, Any],
                 dedupe_key: str | None, at: datetime, stop_words: frozenset[str] = STOP_WORDS) -> str | None:
    """Record what the reply means (not in the caller's transaction: an opt-out
    is committed on its own, first). Returns the HELP answer, in the
    customer's language, when the reply asked for help."""
    meaning = keyword(text, stop_words=stop_words)
    if meaning in ("stop", "start"):
        optouts.submit(engine, optouts.OptOut(
            kind="stop_sms" if meaning == "stop" else "start_sms", channel=Channel.SMS, address=phone,
            received_at=at, source=source, payload=payload, dedupe_key=dedupe_key, reply=text.strip()))
        return None
    with transaction(engine) as session:
        score = surveys.sms_score(text)
        if score is not None:  # "9": the answer to the latest survey SMS it fits, if one waits
            surveys.answer_by_sms(session, phone=phone, score=score, at=at, source=source)
        found = session.execute(select(Customer.id, Customer.locale).where(Customer.phone == phone).limit(1)).first()
        customer_id, locale = found if found else (None, None)
        responses.record_event(session, type=EventType.REPLY, occurred_at=at, source=source,
                               customer_id=customer_id, payload=payload, dedupe_key=dedupe_key)
    if meaning == "help":
        return HELP_TEXT["zh" if (locale or "").startswith("zh") or "帮助" in text else "en"]
    return None


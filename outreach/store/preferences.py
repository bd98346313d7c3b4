"""A customer's own choices beyond consent: topics turned off, a pause of all
marketing, and channels turned off from the preference page.

Three places read them, each set-based:

* planning — :func:`marketing_allowed` is one SQL condition per candidate
  (``NOT EXISTS`` on two primary keys), evaluated with the rest of
  ``eligibility.eligible_select``;
* the send-time re-check — :func:`holds` reads a batch's topics and pauses in
  one query (``claims.load_claimed``), with the changes still waiting in
  SQLite's opt-out inbox laid over them;
* the preference page — :func:`current`.

Transactional rules are never held by a topic or a pause (they are not
marketing); consent and suppression still apply to them. Every change is
applied by :func:`apply` (topics, pause) or :func:`channel_off`, idempotently,
with its evidence: topics and pauses in ``preference_records``, channels in
the consent ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, exists, not_, select, true
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus
from outreach.store import dialect, permission
from outreach.store.models import Message, Rule
from outreach.store.preference_rows import MarketingPause, PreferenceRecord, TopicOptOut
from outreach.store.responses import UNSUBSCRIBED, _set_consent

#: The ledger source of the changes made on the preference page.
SOURCE = "preference-center"
#: Evidence is kept whole up to this length (the page's words, the address, the time).
MAX_EVIDENCE = 2000


@dataclass(frozen=True, kw_only=True)
class PreferenceChange:
    """What one save of the preference page changes for one customer."""

    customer_id: int
    #: topic → True (turned on) / False (turned off); only the topics that change.
    topics: dict[str, bool] = field(default_factory=dict)
    #: Start (or move) a pause that ends then (naive UTC).
    pause_until: datetime | None = None
    #: End the pause now.
    resume: bool = False
    #: How it was made and what the page said.
    evidence: str = ""

    def to_payload(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "topics": self.topics, "resume": self.resume,
                "pause_until": self.pause_until.isoformat() if self.pause_until else None,
                "evidence": self.evidence}

    @classmethod
    def from_payload(cls, body: dict[str, Any]) -> PreferenceChange:
        until = body.get("pause_until")
        return cls(customer_id=int(body["customer_id"]), topics={str(k): bool(v) for k, v in body["topics"].items()},
                   pause_until=datetime.fromisoformat(until) if until else None, resume=bool(body.get("resume")),
                   evidence=str(body.get("evidence", "")))

    def __bool__(self) -> bool:
        return bool(self.topics) or self.pause_until is not None or self.resume


@dataclass(frozen=True)
class Preferences:
    """One customer's topics turned off and pause (None: not paused)."""

    topics_off: frozenset[str] = frozenset()
    paused_until: datetime | None = None

    def after(self, change: PreferenceChange) -> Preferences:
        """These preferences once ``change`` is applied."""
        off = set(self.topics_off)
        for topic, on in change.topics.items():
            (off.discard if on else off.add)(topic)
        until = None if change.resume else (change.pause_until or self.paused_until)
        return Preferences(frozenset(off), until)

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


def current(session: Session | Connection, customer_id: int, *, now: datetime,
            pending: Iterable[PreferenceChange] = ()) -> Preferences:
    """The customer's preferences as recorded, with ``pending`` changes (not
    yet recorded: SQLite's inbox) laid over them in order; an ended pause is none."""
    off = frozenset(session.execute(select(TopicOptOut.topic).where(TopicOptOut.customer_id == customer_id))
                    .scalars())
    until = session.execute(select(MarketingPause.paused_until)
                            .where(MarketingPause.customer_id == customer_id)).scalar()
    found = Preferences(off, until)
    for change in pending:
        if change.customer_id == customer_id:
            found = found.after(change)
    return found if found.paused(now) else replace(found, paused_until=None)


# ------------------------------------------------------------------ writing
def _record(session: Session, change: PreferenceChange, *, kind: str, name: str, value: str, at: datetime,
            source: str) -> None:
    session.add(PreferenceRecord(customer_id=change.customer_id, kind=kind, name=name, value=value, source=source,
                                 evidence=change.evidence[:MAX_EVIDENCE], recorded_at=at))


def apply(session: Session, change: PreferenceChange, *, at: datetime, source: str = SOURCE) -> int:
    """Record ``change`` (idempotent: what is already so writes nothing).
    Returns how many evidence records it wrote."""
    written = 0
    cid = change.customer_id
    off = set(session.scalars(select(TopicOptOut.topic).where(TopicOptOut.customer_id == cid)))
    for topic, on in sorted(change.topics.items()):
        if on and topic in off:
            session.execute(delete(TopicOptOut).where(TopicOptOut.customer_id == cid, TopicOptOut.topic == topic))
        elif not on and topic not in off:
            session.execute(dialect.insert(session, TopicOptOut).values(customer_id=cid, topic=topic, opted_out_at=at)
                            .on_conflict_do_nothing(index_elements=["customer_id", "topic"]))
        else:
            continue
        _record(session, change, kind="topic", name=topic, value="on" if on else "off", at=at, source=source)
        written += 1
    pause = session.get(MarketingPause, cid)
    if change.resume and pause is not None:
        session.delete(pause)
        _record(session, change, kind="pause", name="", value="resumed", at=at, source=source)
        written += 1
    elif change.pause_until is not None and (pause is None or pause.paused_until != change.pause_until):
        values = {"paused_at": at, "paused_until": change.pause_until}
        session.execute(dialect.insert(session, MarketingPause).values(customer_id=cid, **values)
                        .on_conflict_do_update(index_elements=["customer_id"], set_=values))
        _record(session, change, kind="pause", name="", value=f"until {change.pause_until.isoformat()}", at=at,
                source=source)
        written += 1
    session.flush()
    return written


def channel_off(session: Session, *, customer_id: int, channel: Channel, address: str, at: datetime,
                evidence: str, source: str = SOURCE) -> None:
    """The customer turned a channel off: consent revoked (the page's words
    as evidence) and the address suppressed, as an unsubscribe does — so a
    later import cannot switch it back on; only new evidence can
    (:mod:`outreach.store.confirmations`, or a START reply)."""
    _set_consent(session, customer_id=customer_id, channel=channel, status=ConsentStatus.REVOKED, occurred_at=at,
                 source=source, evidence=evidence[:MAX_EVIDENCE])
    if address:
        permission.suppress(session, channel=channel, address=address, reason=UNSUBSCRIBED, now=at)


# ------------------------------------------------------------------ planning
def marketing_allowed(*, topic: str | None, transactional: bool, now: datetime,
                      customer_id: Any) -> ColumnElement[bool]:
    """SQL: the customer's own choices allow a message of a rule with this
    topic as of ``now`` — not paused then, the topic not turned off by then.
    Always true for a transactional rule."""
    if transactional:
        return true()
    allowed: list[ColumnElement[bool]] = [not_(exists().where(
        MarketingPause.customer_id == customer_id, MarketingPause.paused_at <= now,
        MarketingPause.paused_until > now))]
    if topic:
        allowed.append(not_(exists().where(
            TopicOptOut.customer_id == customer_id, TopicOptOut.topic == topic, TopicOptOut.opted_out_at <= now)))
    return and_(*allowed)


def held_reason(session: Session, *, customer_id: int, topic: str | None, transactional: bool,
                now: datetime) -> str | None:
    """Why the customer's choices hold a rule's message back (for ``rules explain``), or None."""
    if transactional:
        return None
    prefs = current(session, customer_id, now=now)
    if topic and topic in prefs.topics_off:
        return topic_refusal(topic)
    if prefs.paused_until is not None:
        return pause_refusal(prefs.paused_until)
    return None


# ------------------------------------------------------------------ send time
@dataclass(frozen=True)
class Hold:
    """What of the customer's choices concerns one claimed message."""

    topic_off: str | None = None
    paused_until: datetime | None = None


NO_HOLD = Hold()


def topic_refusal(topic: str) -> str:
    return f"topic {topic} turned off by the customer"


def pause_refusal(until: datetime) -> str:
    return f"paused by the customer until {until:%Y-%m-%d %H:%M} UTC"


def holds(conn: Connection, message_ids: Sequence[int], *,
          pending: Sequence[PreferenceChange] = ()) -> dict[int, Hold]:
    """For a batch of claimed messages, in one query: the topic turned off
    and the pause of each marketing message's customer, with ``pending``
    changes laid over them. Messages without either are left out."""
    if not message_ids:
        return {}
    rows = conn.execute(
        select(Message.id, Message.customer_id, Rule.topic, TopicOptOut.topic.label("off"),
               MarketingPause.paused_until)
        .join(Rule, Rule.id == Message.rule_id)
        .outerjoin(TopicOptOut, and_(TopicOptOut.customer_id == Message.customer_id, TopicOptOut.topic == Rule.topic))
        .outerjoin(MarketingPause, MarketingPause.customer_id == Message.customer_id)
        .where(dialect.among(conn, Message.id, message_ids), Rule.transactional.is_(False))
    ).all()
    found: dict[int, Hold] = {}
    for row in rows:
        prefs = Preferences(frozenset([row.off] if row.off else []), row.paused_until)
        for change in pending:
            if change.customer_id == row.customer_id:
                prefs = prefs.after(change)
        hold = Hold(topic_off=row.topic if row.topic in prefs.topics_off else None, paused_until=prefs.paused_until)
        if hold != NO_HOLD:
            found[row.id] = hold
    return found

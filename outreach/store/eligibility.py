"""Who is eligible for a rule now: one SELECT over the whole customer base.

``eligible_select`` combines the trigger (who, for which occurrence), the
segment, permission per channel in the rule's order, cooldown and
frequency-cap counts of each candidate's recent messages, the customer's own
choices (a topic turned off, a pause: ``preferences.marketing_allowed``), the
control group and quiet hours — evaluated by the database in one statement, which
planning writes (``outbox.plan``) and ``rules preview`` / ``explain`` read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Numeric,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    not_,
    select,
    true,
)
from sqlalchemy.orm import Session

from outreach.clock import zone_or_utc
from outreach.domain import Channel, MessageStatus
from outreach.rules.policy import Policy, SendWindow
from outreach.rules.spec import RuleSpec
from outreach.store import holdout, preferences
from outreach.store.models import Customer, Message, Rule
from outreach.store.permission import address_column, current_consent, permitted
from outreach.store.segments import compile_condition
from outreach.store.triggers import trigger_select


def transactional_rules(session: Session) -> list[int]:
    """Ids of the rules whose messages the frequency cap does not count."""
    return list(session.scalars(select(Rule.id).where(Rule.transactional.is_(True))))


def distinct_timezones(session: Session) -> list[str]:
    return list(session.scalars(select(Customer.timezone).distinct()))


#: Statuses that count against cooldowns and frequency caps.
COUNTED = (MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT)


def _window_for(spec: RuleSpec, policy: Policy | None, channel: Channel) -> SendWindow | None:
    if spec.send_window is not None:
        return spec.send_window
    return policy.send_windows.get(channel) if policy else None


def next_allowed(now: datetime, tz_name: str, window: SendWindow) -> datetime | None:
    """None if ``now`` is inside the local send window, else the next start (naive UTC)."""
    zone = zone_or_utc(tz_name)
    local = now.replace(tzinfo=UTC).astimezone(zone)
    start, end = (time.fromisoformat(window.start), time.fromisoformat(window.end))
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside or start == end:
        return None
    day = local.date() if t < start else local.date() + timedelta(days=1)
    opening = datetime.combine(day, start, tzinfo=zone)
    return opening.astimezone(UTC).replace(tzinfo=None)


def _messages_since(customer_id: Any, since: datetime, statuses: tuple[MessageStatus, ...],
                    *extra: ColumnElement[bool]) -> Any:
    """How many of one customer's messages since ``since`` have one of ``statuses``.

    The status is tested inside the count, not in WHERE: the look-up then
    always goes through the customer's own index entries. With the status in
    WHERE, a planner holding stale statistics may AND in the status index —
    reading every queued message of the outbox for each candidate."""
    return (
        select(func.count(case((Message.status.in_(statuses), 1), else_=None)))
        .select_from(Message)
        .where(Message.customer_id == customer_id, Message.planned_at > since, *extra)
        .scalar_subquery()
    )


def eligible_select(
    spec: RuleSpec,
    *,
    rule_id: int | None,
    now: datetime,
    timezones: list[str],
    policy: Policy | None = None,
    segments: dict[str, Any] | None = None,
    lateral: bool = False,
    transactional_rules: Sequence[int] = (),
    assignment: str = holdout.HASHED,
    winner: str | None = None,
) -> Select[*tuple[Any, ...]]:
    """Who is eligible now: one row per customer of trigger ∩ segment with

    * ``channel`` — the first channel in the rule's order that is permitted
      (consent granted, address, not suppressed) and under the caps; NULL if none;
    * ``consent_channel`` — the same ignoring caps (to tell "capped" from "no consent");
    * ``preferred`` — the customer's choices allow the rule's topic now (not
      turned off, not paused; always for a transactional rule): else ``channel`` is NULL;
    * ``to_address``, ``cost``, ``held_out``, ``cooldown_clear``, ``not_before``;
    * ``variant`` — the A/B variant by weight (``winner`` for everyone once a test
      has one), NULL for the held out and for rules without variants.

    The control group and the variants are drawn with the rule's ``assignment``
    scheme (``store.holdout``).
    """
    cand = trigger_select(spec, now, timezones=timezones).subquery("cand")
    consents = {ch: current_consent(ch) for ch in spec.channels}
    flags = {ch: permitted(ch, now, consents[ch]) for ch in spec.channels}
    # Counts of the candidate's recent messages: (since, statuses, extra filter).
    counted: dict[str, tuple[datetime, tuple[MessageStatus, ...], list[ColumnElement[bool]]]] = {}
    if rule_id is not None and spec.cooldown_days > 0:
        counted["cooldown_hits"] = (now - timedelta(days=spec.cooldown_days),
                                    (*COUNTED, MessageStatus.HELD_OUT), [Message.rule_id == rule_id])
    # A transactional rule is exempt from the frequency cap, and its messages
    # do not use up the cap of marketing rules.
    cap = policy.frequency_cap if policy and not spec.transactional else None
    marketing: list[ColumnElement[bool]] = (
        [Message.rule_id.not_in(list(transactional_rules))] if transactional_rules else [])
    if cap and cap.max_messages:
        counted["recent_total"] = (now - timedelta(days=cap.days), COUNTED, marketing)
    for ch in spec.channels:
        if cap and ch in cap.per_channel:
            counted[f"recent_{ch.value}"] = (now - timedelta(days=cap.days), COUNTED,
                                             [Message.channel == ch, *marketing])
    # Counted per candidate through the (customer, planned_at) index: cost
    # follows the candidates, not every message of the window. With LATERAL
    # (PostgreSQL) one index range scan gives every count; SQLite runs one
    # correlated count each.
    recent: Any = None
    if counted and lateral:
        recent = (
            select(*[
                func.count(case((and_(Message.planned_at > since, Message.status.in_(statuses), *extra), 1),
                                else_=None)).label(name)
                for name, (since, statuses, extra) in counted.items()
            ])
            .where(Message.customer_id == cand.c.customer_id,
                   Message.planned_at > min(since for since, _, _ in counted.values()))
            .lateral("recent")
        )
        count_cols = {name: recent.c[name] for name in counted}
    else:
        count_cols = {name: _messages_since(cand.c.customer_id, since, statuses, *extra)
                      for name, (since, statuses, extra) in counted.items()}
    cooldown_clear: ColumnElement[bool] = (
        count_cols.pop("cooldown_hits") == 0 if "cooldown_hits" in count_cols else literal(True)
    )
    recent_cols = [col.label(name) for name, col in count_cols.items()]
    query = (
        select(
            cand.c.customer_id,
            cand.c.occurrence_key,
            Customer.timezone.label("timezone"),
            holdout.bucket(spec.name, assignment).label("bucket"),
            _variant(spec, winner).label("variant"),
            preferences.marketing_allowed(topic=spec.topic.value if spec.topic else None,
                                          transactional=spec.transactional, now=now,
                                          customer_id=cand.c.customer_id).label("preferred"),
            *[flags[ch].label(f"ok_{ch.value}") for ch in spec.channels],
            *[address_column(ch).label(f"addr_{ch.value}") for ch in spec.channels],
            cooldown_clear.label("cooldown_clear"),
            *recent_cols,
        )
        .join(Customer, Customer.id == cand.c.customer_id)
        .where(compile_condition(spec.segment, now, segments=segments))
    )
    for ch, current in consents.items():
        query = query.outerjoin(current, and_(current.customer_id == Customer.id, current.channel == ch))
    if recent is not None:
        query = query.join(recent, true())
    # MATERIALIZED: the database computes each customer's consent, suppression
    # and cap flags once; inlined, every CASE below would re-run the subqueries.
    inner = query.cte("eligible").prefix_with("MATERIALIZED")

    def under_cap(ch: Channel) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if cap and cap.max_messages:
            parts.append(inner.c.recent_total < cap.max_messages)
        if cap and ch in cap.per_channel:
            parts.append(inner.c[f"recent_{ch.value}"] < cap.per_channel[ch])
        return and_(*parts) if parts else literal(True)

    ok = {ch: inner.c[f"ok_{ch.value}"] for ch in spec.channels}
    sendable = {ch: and_(ok[ch], under_cap(ch), inner.c.preferred) for ch in spec.channels}
    channel = case(*[(sendable[ch], literal(ch.value)) for ch in spec.channels], else_=None)
    consent_channel = case(*[(ok[ch], literal(ch.value)) for ch in spec.channels], else_=None)
    address = case(*[(sendable[ch], inner.c[f"addr_{ch.value}"]) for ch in spec.channels], else_=None)
    cost = case(
        *[(sendable[ch], literal(getattr(spec.cost, ch.value), Numeric(10, 4))) for ch in spec.channels],
        else_=literal(Decimal("0"), Numeric(10, 4)),
    )
    # The channel actually chosen: sendable, and no earlier channel was.
    chosen = {
        ch: and_(sendable[ch], *[not_(sendable[prev]) for prev in spec.channels[:index]])
        for index, ch in enumerate(spec.channels)
    }
    deferrals = []
    for ch in spec.channels:
        window = _window_for(spec, policy, ch)
        if window is None:
            continue
        for tz in timezones:
            opening = next_allowed(now, tz, window)
            if opening is not None:
                deferrals.append((and_(chosen[ch], inner.c.timezone == tz), literal(opening)))
    not_before = case(*deferrals, else_=None) if deferrals else literal(None).cast(DateTime)
    held = inner.c.bucket < holdout.holdout_threshold(spec.holdout_percent)
    return select(
        inner.c.customer_id,
        inner.c.occurrence_key,
        channel.label("channel"),
        consent_channel.label("consent_channel"),
        inner.c.preferred,
        address.label("to_address"),
        cost.label("cost"),
        held.label("held_out"),
        inner.c.cooldown_clear,
        not_before.label("not_before"),
        case((held, None), else_=inner.c.variant).label("variant"),
    )


def _variant(spec: RuleSpec, winner: str | None) -> ColumnElement[Any]:
    if not spec.variants:
        return literal(None, String)
    if winner is not None:
        return literal(winner, String)
    return holdout.variant_column(spec.name, spec.weights)

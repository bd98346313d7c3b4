"""``rules explain``: for one customer, each condition of a rule with its
value, and whether and why they would get the rule's message — changing
nothing (the same SQL as planning, in a transaction that is rolled back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus
from outreach.errors import InputError
from outreach.planning.prepare import prepare
from outreach.planning.preview import eligible_rows, rule_id_of
from outreach.rules import LoadedRule, RuleSet
from outreach.rules.checks import require_known_segments
from outreach.rules.conditions import (
    AllCondition,
    AnyCondition,
    FieldCondition,
    NotCondition,
    OrdersCondition,
    SegmentRef,
    StatsCondition,
    TagCondition,
    children,
)
from outreach.store import eligibility, holdout, preferences
from outreach.store.models import ConsentRecord, Customer, CustomerStats, Message, Order, Suppression
from outreach.store.segments import compile_condition
from outreach.store.triggers import trigger_select


@dataclass
class Check:
    label: str
    passed: bool
    value: Any = None
    children: list[Check] = field(default_factory=list)


@dataclass
class Explanation:
    rule: str
    customer: str
    trigger: Check
    segment: Check | None
    channels: list[Check]
    policy: list[Check]
    decision: str
    would_send: bool
    channel: str | None = None


def _truth(session: Session, cid: int, expr: Any) -> bool:
    return bool(session.scalar(select(case((expr, True), else_=False)).where(Customer.id == cid)))


def _describe(cond: Any) -> str:
    data = cond.model_dump(by_alias=True, exclude_none=True)
    return ", ".join(f"{k}: {v}" for k, v in data.items())


def _leaf_value(session: Session, cid: int, cond: Any, now: datetime) -> Any:
    if isinstance(cond, FieldCondition):
        if cond.field.startswith("attributes."):
            attrs = session.scalar(select(Customer.attributes).where(Customer.id == cid)) or {}
            return attrs.get(cond.field.split(".", 1)[1])
        return session.scalar(select(getattr(Customer, cond.field)).where(Customer.id == cid))
    if isinstance(cond, TagCondition):
        customer = session.get(Customer, cid)
        return sorted(t.tag for t in customer.tags) if customer else []
    if isinstance(cond, OrdersCondition):
        agg = cond.orders
        where = [Order.customer_id == cid, Order.ordered_at <= now]
        if agg.within_days:
            where.append(Order.ordered_at > now - timedelta(days=agg.within_days))
        fn: Any = {"count": func.count(Order.id), "total": func.coalesce(func.sum(Order.amount), 0),
              "average": func.avg(Order.amount), "days_since_last": func.max(Order.ordered_at),
              "days_since_first": func.min(Order.ordered_at)}[agg.metric]
        value = session.scalar(select(fn).where(*where))
        if agg.metric.startswith("days_since") and value is not None:
            return round((now - value).total_seconds() / 86400, 1)
        return value
    if isinstance(cond, StatsCondition):
        row = session.get(CustomerStats, cid)
        if row is None:
            return None
        return {k: getattr(row, k) for k in ("r_score", "f_score", "m_score", "rfm_segment",
                                             "value_tier", "lifecycle_stage", "clv")}
    return None


def _explain_condition(session: Session, cid: int, cond: Any, now: datetime, ruleset: RuleSet) -> Check:
    passed = _truth(session, cid, compile_condition(cond, now, segments=ruleset.segments))
    if isinstance(cond, (AllCondition, AnyCondition)):
        label = "all of" if isinstance(cond, AllCondition) else "any of"
        return Check(label, passed, children=[_explain_condition(session, cid, c, now, ruleset)
                                              for c in children(cond)])
    if isinstance(cond, NotCondition):
        return Check("not", passed, children=[_explain_condition(session, cid, cond.not_, now, ruleset)])
    if isinstance(cond, SegmentRef):
        inner = ruleset.segments.get(cond.segment)
        kids: list[Check] = [_explain_condition(session, cid, inner, now, ruleset)] if inner is not None else []
        return Check(f"segment {cond.segment}", passed, children=kids)
    return Check(_describe(cond), passed, value=_leaf_value(session, cid, cond, now))


def explain(
    engine: Engine, loaded: LoadedRule, *, customer: str, now: datetime, ruleset: RuleSet
) -> Explanation:
    spec = loaded.spec
    require_known_segments([loaded], ruleset)
    with Session(engine) as session:
        with session.begin():
            row = session.scalar(select(Customer).where(Customer.external_id == customer))
            if row is None:
                raise InputError.single(f"no customer with external id '{customer}'", field="--customer",
                                        hint="use the external_id from your customers CSV")
            cid = row.id
            prepare(session, [spec], now=now, ruleset=ruleset)
            rule_id = rule_id_of(session, spec.name)
            cand = trigger_select(spec, now, timezones=eligibility.distinct_timezones(session)).subquery()
            keys = list(session.scalars(select(cand.c.occurrence_key).where(cand.c.customer_id == cid)))
            trigger = Check(f"trigger {spec.trigger.type}", bool(keys), value=keys[0] if keys else None)
            segment = _explain_condition(session, cid, spec.segment, now, ruleset) if spec.segment else None
            channels = [_channel_check(session, row, ch, now) for ch in spec.channels]
            e = eligible_rows(session, spec, now, ruleset)
            decision_row = session.execute(select(e).where(e.c.customer_id == cid)).first()
            existing = None
            if rule_id is not None and keys:
                existing = session.execute(
                    select(Message.id, Message.occurrence_key, Message.status).where(
                        Message.rule_id == rule_id, Message.customer_id == cid,
                        Message.occurrence_key == keys[0])).first()
            last = None if rule_id is None else session.scalar(
                select(func.max(Message.planned_at)).where(Message.rule_id == rule_id, Message.customer_id == cid))
            scheme = holdout.scheme_of(session, spec.name)
            held = holdout.is_held_out(spec.name, cid if scheme == holdout.LEGACY else row.external_id,
                                       spec.holdout_percent, scheme)
            turned_off = preferences.held_reason(session, customer_id=cid, topic=spec.topic.value if spec.topic
                                                 else None, transactional=spec.transactional, now=now)
            policy = [
                Check(f"customer's preferences (topic {spec.topic.value if spec.topic else 'none'})",
                      turned_off is None, value=turned_off or "allowed"),
                Check(f"cooldown {spec.cooldown_days} days", decision_row is None or bool(decision_row.cooldown_clear),
                      value=f"last message from this rule: {last or 'never'}"),
                Check(f"holdout {spec.holdout_percent}% ({scheme} groups)", not held,
                      value="control group" if held else "treated"),
            ]
            if spec.variants:
                variant = decision_row.variant if decision_row is not None else None
                policy.append(Check("A/B variant", variant is not None,
                                    value=f"{variant} (template {spec.template_for(variant)})" if variant
                                    else "none (held out or not eligible)"))
            session.rollback()
    decision, send, channel = _decide(trigger, segment, decision_row, existing, policy)
    return Explanation(spec.name, customer, trigger, segment, channels, policy, decision, send, channel)


def _channel_check(session: Session, customer: Customer, channel: Channel, now: datetime) -> Check:
    address = customer.email if channel is Channel.EMAIL else customer.phone
    latest = session.execute(
        select(ConsentRecord.status, ConsentRecord.recorded_at, ConsentRecord.source)
        .where(ConsentRecord.customer_id == customer.id, ConsentRecord.channel == channel,
               ConsentRecord.recorded_at <= now)
        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc()).limit(1)
    ).first()
    suppressed = address and session.scalar(
        select(Suppression.reason).where(Suppression.channel == channel, Suppression.address == address))
    ok = bool(address) and latest is not None and latest.status is ConsentStatus.GRANTED and not suppressed
    consent = f"{latest.status.value} on {latest.recorded_at:%Y-%m-%d} via {latest.source}" if latest else "none"
    detail = f"address {address or 'missing'}; consent {consent}"
    if suppressed:
        detail += f"; suppressed ({suppressed})"
    return Check(f"channel {channel.value}", ok, value=detail)


def _decide(trigger: Check, segment: Check | None, row: Any, existing: Any,
            policy: list[Check]) -> tuple[str, bool, str | None]:
    if not trigger.passed:
        return "not triggered: the trigger does not select this customer now", False, None
    if segment is not None and not segment.passed:
        return "not in the rule's segment", False, None
    if row is None:
        return "not eligible", False, None
    if existing is not None:
        return (f"already planned for this occurrence ({existing.occurrence_key}): "
                f"message {existing.id} is {existing.status.value}"), False, None
    if not row.cooldown_clear:
        return "cooldown: this rule messaged the customer recently", False, None
    if row.consent_channel is None:
        return "no permitted channel: no consent, no address or suppressed on every channel", False, None
    if not row.preferred:
        reason = next((c.value for c in policy if c.label.startswith("customer's preferences")), "")
        return f"the customer's own choice: {reason}", False, None
    if row.channel is None:
        return "frequency cap reached on every permitted channel", False, None
    if row.held_out:
        return "held out: in the control group for this rule (recorded, never sent)", False, row.channel
    variant = f", variant {row.variant}" if row.variant else ""
    if row.not_before is not None:
        return (f"would receive it on {row.channel}{variant}, deferred by quiet hours until "
                f"{row.not_before:%Y-%m-%d %H:%M} UTC"), True, row.channel
    return f"would receive it now on {row.channel} ({row.to_address}){variant}", True, row.channel


__all__ = ["Check", "Explanation", "explain"]

"""``rules preview``: how many customers a rule would message now, by
channel, and who would not and why — changing nothing.

It runs the same SQL as planning (``eligibility.eligible_select``) inside a
transaction that is rolled back, so what it says is what ``run`` would do.
For a rule with an offer it also counts the pool's free codes against the
messages that would want one (these and those already waiting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.orm import Session

from outreach.planning.control import ControlGroup
from outreach.planning.prepare import prepare
from outreach.rules import LoadedRule, RuleSet
from outreach.rules.checks import require_known_segments
from outreach.rules.spec import RuleSpec
from outreach.store import coupons, dialect, eligibility, holdout, variants
from outreach.store.models import Customer, Message, Rule

#: Recipients shown by ``rules preview``.
SAMPLE_SIZE = 10


@dataclass
class Preview:
    rule: str
    matched: int = 0
    no_consent: int = 0
    #: Turned the rule's topic off, or paused all marketing.
    turned_off: int = 0
    cooldown: int = 0
    capped: int = 0
    already_planned: int = 0
    held_out: int = 0
    deferred: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    #: Of those who would receive it, how many per A/B variant (empty without variants).
    by_variant: dict[str, int] = field(default_factory=dict)
    #: How the control group and variants are drawn (``store.holdout``): ``sha256`` or ``legacy``.
    assignment: str = holdout.HASHED
    sample: list[dict[str, Any]] = field(default_factory=list)
    #: A rule with an offer: its pool, the codes it can still give, and the
    #: messages of its rules already waiting to be sent without one.
    offer_pool: str | None = None
    free_codes: int = 0
    waiting_for_codes: int = 0
    #: The rule's holdout_percent, and its control group from earlier runs
    #: (held out; of which followed by an order in their window).
    holdout_percent: float = 0.0
    control_so_far: int = 0
    control_converted_so_far: int = 0

    @property
    def would_send(self) -> int:
        return sum(self.by_channel.values())

    @property
    def control_group(self) -> ControlGroup:
        """The control group after this run (``planning.control`` warns when it is too small)."""
        return ControlGroup(holdout_percent=self.holdout_percent, so_far=self.control_so_far,
                            converted_so_far=self.control_converted_so_far, this_run=self.held_out,
                            would_send=self.would_send)

    @property
    def codes_short(self) -> int:
        """Messages that would not be sent for want of a code (0: the pool has enough)."""
        if self.offer_pool is None:
            return 0
        return max(0, self.would_send + self.waiting_for_codes - self.free_codes)


def rule_id_of(session: Session, name: str) -> int | None:
    return session.scalar(select(Rule.id).where(Rule.name == name))


def eligible_rows(session: Session, spec: RuleSpec, now: datetime, ruleset: RuleSet,
              *, materialized: bool = False) -> Any:
    rule_id = rule_id_of(session, spec.name)
    query = eligibility.eligible_select(
        spec, rule_id=rule_id, now=now,
        timezones=eligibility.distinct_timezones(session), policy=ruleset.policy, segments=ruleset.segments,
        lateral=dialect.has_lateral(session), transactional_rules=eligibility.transactional_rules(session),
        assignment=holdout.scheme_of(session, spec.name),
        winner=variants.winner_in_force(variants.decision_of(session, rule_id), [n for n, _ in spec.weights]),
    )
    if materialized:
        # Evaluated once; the counts, the per-channel split and the sample read it.
        return dialect.materialize(session, query, "outreach_preview")
    return query.subquery("e")


def _existing(rule_id: int | None, e: Any) -> Any:
    """The occurrence already has a message (planning would insert nothing)."""
    if rule_id is None:
        return False
    return (
        select(Message.id)
        .where(Message.rule_id == rule_id, Message.customer_id == e.c.customer_id,
               Message.occurrence_key == e.c.occurrence_key)
        .exists()
    )


def preview(engine: Engine, loaded: LoadedRule, *, now: datetime, ruleset: RuleSet) -> Preview:
    spec = loaded.spec
    result = Preview(rule=spec.name, holdout_percent=spec.holdout_percent)
    require_known_segments([loaded], ruleset)
    with Session(engine) as session:
        with session.begin():
            prepare(session, [spec], now=now, ruleset=ruleset)
            rule_id = rule_id_of(session, spec.name)
            e = eligible_rows(session, spec, now, ruleset, materialized=True)
            existing = _existing(rule_id, e)
            consented = e.c.consent_channel.is_not(None)
            fresh = and_(consented, e.c.cooldown_clear, ~existing) if rule_id else and_(consented, e.c.cooldown_clear)
            sendable = and_(fresh, e.c.channel.is_not(None))
            turned_off = and_(fresh, ~e.c.preferred)
            row = session.execute(
                select(
                    func.count(),
                    func.sum(case((~consented, 1), else_=0)),
                    func.sum(case((and_(consented, ~e.c.cooldown_clear), 1), else_=0)),
                    (func.sum(case((and_(consented, e.c.cooldown_clear, existing), 1), else_=0))
                     if rule_id else func.sum(0)),
                    func.sum(case((and_(fresh, e.c.preferred, e.c.channel.is_(None)), 1), else_=0)),
                    func.sum(case((and_(sendable, e.c.held_out), 1), else_=0)),
                    func.sum(case((and_(sendable, ~e.c.held_out, e.c.not_before.is_not(None)), 1), else_=0)),
                    func.sum(case((turned_off, 1), else_=0)),
                )
            ).one()
            (result.matched, result.no_consent, result.cooldown, result.already_planned,
             result.capped, result.held_out, result.deferred, result.turned_off) = (int(v or 0) for v in row)
            result.by_channel = {
                str(ch): n
                for ch, n in session.execute(
                    select(e.c.channel, func.count()).where(sendable, ~e.c.held_out).group_by(e.c.channel)
                ).all()
            }
            if spec.variants:
                result.by_variant = {
                    str(variant): n for variant, n in session.execute(
                        select(e.c.variant, func.count()).where(sendable, ~e.c.held_out).group_by(e.c.variant))}
            result.assignment = holdout.scheme_of(session, spec.name)
            if rule_id is not None:
                for arm in variants.variant_outcomes(session, now=now, rule_ids=[rule_id]):
                    if arm.held_out:
                        result.control_so_far += arm.measured
                        result.control_converted_so_far += arm.converted
            for ext, name, channel, address, not_before in session.execute(
                select(Customer.external_id, Customer.name, e.c.channel,
                       e.c.to_address, e.c.not_before)
                .join(Customer, Customer.id == e.c.customer_id)
                .where(sendable, ~e.c.held_out)
                .order_by(e.c.customer_id)
                .limit(SAMPLE_SIZE)
            ).all():
                result.sample.append({"customer": ext, "name": name, "channel": channel,
                                      "address": address, "not_before": not_before})
            if spec.offer is not None:
                result.offer_pool = spec.offer.pool
                result.free_codes = coupons.free_codes(session, spec.offer.pool, today=now.date())
                result.waiting_for_codes = coupons.codes_wanted(session, spec.offer.pool)
            session.rollback()
    return result


__all__ = ["Preview", "eligible_rows", "preview", "rule_id_of"]

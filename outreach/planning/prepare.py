"""Before rules are evaluated: the per-customer aggregates and memberships they read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.rules import RuleSet
from outreach.rules.policy import LifecyclePolicy
from outreach.rules.spec import RuleSpec
from outreach.rules.triggers import LifecycleTrigger, SegmentEntryTrigger
from outreach.store import dialect, memberships, stats
from outreach.store.models import Customer, CustomerStats
from outreach.store.segments import compile_condition, uses_stats


def needs_stats(spec: RuleSpec, ruleset: RuleSet) -> bool:
    trig = spec.trigger
    return (
        isinstance(trig, LifecycleTrigger)
        or uses_stats(spec.segment, ruleset.segments)
        or (isinstance(trig, SegmentEntryTrigger) and uses_stats(trig.enters, ruleset.segments))
    )


def prepare(session: Session, specs: Sequence[RuleSpec], *, now: datetime, ruleset: RuleSet) -> None:
    """Refresh per-customer aggregates (once) and entry memberships as of ``now``."""
    dialect.tune_session(session)
    lifecycle = ruleset.policy.lifecycle if ruleset.policy else LifecyclePolicy()
    thresholds = stats.LifecycleThresholds(**lifecycle.model_dump())
    if any(needs_stats(s, ruleset) for s in specs) and not stats.is_fresh(session, now=now, thresholds=thresholds):
        stats.refresh(session, now=now, thresholds=thresholds)
    for spec in specs:
        key = spec.membership_key
        if key is None:
            continue
        trig = spec.trigger
        if isinstance(trig, LifecycleTrigger):
            members = select(CustomerStats.customer_id).where(CustomerStats.lifecycle_stage == trig.stage)
        else:
            assert isinstance(trig, SegmentEntryTrigger)
            members = select(Customer.id).where(compile_condition(trig.enters, now, segments=ruleset.segments))
        memberships.sync(session, key=key, members=members, now=now)

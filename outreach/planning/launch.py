"""Launch rules: prepare (stats, memberships), plan in SQL, queue, drain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach.store import memberships
from outreach.store import stats
from outreach.store import dialect, outbox
from outreach.sending import queue
from outreach.config import Settings
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerStats
from outreach.rules import LoadedRule, schema
from outreach.rules.checks import require_known_segments
from outreach.store.segments import compile_condition, uses_stats
from outreach.store.triggers import membership_key


@dataclass(frozen=True)
class RuleSet:
    """What applies across rules: the policy file and the named segments."""

    policy: schema.Policy | None = None
    segments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Any) -> RuleSet:
        from outreach.rules.loader import load_policy, load_segments

        return cls(policy=load_policy(folder), segments=load_segments(folder))


@dataclass(frozen=True)
class LaunchResult:
    rule: str
    run_id: int
    planned: int
    held_out: int
    queued: int


def needs_stats(spec: schema.RuleSpec, ruleset: RuleSet) -> bool:
    trig = spec.trigger
    return (
        isinstance(trig, schema.LifecycleTrigger)
        or uses_stats(spec.segment, ruleset.segments)
        or (isinstance(trig, schema.SegmentEntryTrigger) and uses_stats(trig.enters, ruleset.segments))
    )


def prepare(session: Session, specs: Sequence[schema.RuleSpec], *, now: datetime, ruleset: RuleSet) -> None:
    """Refresh per-customer aggregates (once) and entry memberships as of ``now``."""
    dialect.tune_session(session)
    lifecycle = ruleset.policy.lifecycle if ruleset.policy else schema.LifecyclePolicy()
    thresholds = stats.LifecycleThresholds(**lifecycle.model_dump())
    if any(needs_stats(s, ruleset) for s in specs) and not stats.is_fresh(session, now=now, thresholds=thresholds):
        stats.refresh(session, now=now, thresholds=thresholds)
    for spec in specs:
        key = membership_key(spec)
        if key is None:
            continue
        trig = spec.trigger
        if isinstance(trig, schema.LifecycleTrigger):
            members = select(CustomerStats.customer_id).where(CustomerStats.lifecycle_stage == trig.stage)
        else:
            assert isinstance(trig, schema.SegmentEntryTrigger)
            members = select(Customer.id).where(compile_condition(trig.enters, now, segments=ruleset.segments))
        memberships.sync(session, key=key, members=members, now=now)


def plan_rule(
    engine: Engine, loaded: LoadedRule, *, now: datetime, ruleset: RuleSet | None = None,
    prepared: bool = False,
) -> tuple[LaunchResult, list[int]]:
    """Plan one rule as of ``now`` and mark its due messages queued (one transaction)."""
    ruleset = ruleset or RuleSet()
    if not prepared:  # launch() has checked every rule already
        require_known_segments([loaded], ruleset)
    with transaction(engine) as session:
        if not prepared:
            prepare(session, [loaded.spec], now=now, ruleset=ruleset)
        rule = outbox.sync_rule(session, loaded, now)
        run = outbox.start_run(session, rule, as_of=now, started_at=now)
        counts = outbox.plan(session, loaded.spec, rule, run, policy=ruleset.policy, segments=ruleset.segments)
        ids = outbox.mark_queued(session, run_id=run.id, now=now)
        run.finished_at = now
        result = LaunchResult(loaded.spec.name, run.id, counts.planned, counts.held_out, len(ids))
    return result, ids


def launch(
    settings: Settings,
    engine: Engine,
    rules: list[LoadedRule],
    *,
    now: datetime,
    simulated: bool,
    ruleset: RuleSet | None = None,
    ctx: queue._Context | None = None,
) -> list[LaunchResult]:
    """Plan each rule (highest priority first, so the frequency cap keeps the
    most important), hand due messages to the broker, queue earlier deferred
    messages whose send window opened, re-enqueue stranded ones, and —
    embedded — deliver them before returning.

    ``simulated`` means ``now`` came from ``--now``: sends are then recorded at
    that time so attribution windows line up with the simulated clock.
    """
    ruleset = ruleset or RuleSet()
    ctx = ctx or queue.setup(settings, engine)
    ordered = sorted(rules, key=lambda r: (-r.spec.priority, r.spec.name))
    require_known_segments(ordered, ruleset)
    with transaction(engine) as session:
        prepare(session, [r.spec for r in ordered], now=now, ruleset=ruleset)
    results: list[LaunchResult] = []
    for loaded in ordered:
        result, ids = plan_rule(engine, loaded, now=now, ruleset=ruleset, prepared=True)
        queue.enqueue(ctx, ids, as_of=now if simulated else None)
        results.append(result)
    with transaction(engine) as session:
        due = outbox.mark_queued(session, run_id=None, now=now)
        stranded = outbox.stranded(session, now=now)
    queue.enqueue(ctx, due, as_of=now if simulated else None)
    queue.enqueue(ctx, stranded, as_of=None)
    queue.drain(ctx)
    return results


def due(engine: Engine, rules: list[LoadedRule], *, now: datetime) -> list[LoadedRule]:
    """Enabled rules whose schedule fired since their last run (no schedule:
    always due; never run: due)."""
    from croniter import croniter

    from outreach.store.models import CampaignRun, Rule

    with Session(engine) as session:
        last = dict(
            session.execute(
                select(Rule.name, func.max(CampaignRun.as_of))
                .join(CampaignRun, CampaignRun.rule_id == Rule.id)
                .group_by(Rule.name)
            ).all()
        )
    chosen = []
    for loaded in rules:
        spec = loaded.spec
        if not spec.enabled:
            continue
        previous = last.get(spec.name)
        if spec.schedule is None or previous is None:
            chosen.append(loaded)
            continue
        # The schedule's latest firing at or before now (a run at exactly
        # 09:00:00 counts as the 09:00 firing; croniter's get_prev is strict).
        fired = croniter(spec.schedule, now + timedelta(microseconds=1)).get_prev(datetime)
        if fired > previous:
            chosen.append(loaded)
    return chosen

"""Launch rules: prepare (stats, memberships), plan in SQL, queue, drain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from outreach import logs
from outreach.config import Settings
from outreach.planning.prepare import prepare
from outreach.rules import LoadedRule, RuleSet
from outreach.rules.checks import require_known_segments
from outreach.sending import queue
from outreach.store import outbox
from outreach.store.engine import transaction

log = logs.get_logger("outreach.planning")


@dataclass(frozen=True)
class LaunchResult:
    rule: str
    run_id: int
    planned: int
    held_out: int
    queued: int


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
    log.info("rule planned", rule=result.rule, run_id=result.run_id, planned=result.planned,
             held_out=result.held_out, queued=result.queued, as_of=now.isoformat())
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

"""Launch rules: plan in SQL, queue through the broker, drain in-process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from outreach import store, tasks
from outreach.config import Settings
from outreach.db import transaction
from outreach.rules import LoadedRule


@dataclass(frozen=True)
class LaunchResult:
    rule: str
    run_id: int
    planned: int
    held_out: int
    queued: int


def plan_rule(engine: Engine, loaded: LoadedRule, *, now: datetime) -> tuple[LaunchResult, list[int]]:
    """Plan one rule as of ``now`` and mark its messages queued (one transaction)."""
    with transaction(engine) as session:
        rule = store.sync_rule(session, loaded, now)
        run = store.start_run(session, rule, as_of=now, started_at=now)
        counts = store.plan(session, loaded.spec, rule, run)
        ids = store.mark_queued(session, run_id=run.id, now=now)
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
    ctx: tasks._Context | None = None,
) -> list[LaunchResult]:
    """Plan each rule (highest priority first), hand the messages to the broker,
    re-enqueue stranded ones, and — embedded — deliver them before returning.

    ``simulated`` means ``now`` came from ``--now``: sends are then recorded at
    that time so attribution windows line up with the simulated clock.
    """
    ctx = ctx or tasks.setup(settings, engine)
    results: list[LaunchResult] = []
    for loaded in sorted(rules, key=lambda r: -r.spec.priority):
        result, ids = plan_rule(engine, loaded, now=now)
        tasks.enqueue(ctx, ids, as_of=now if simulated else None)
        results.append(result)
    with transaction(engine) as session:
        stranded = store.stranded(session, now=now)
    tasks.enqueue(ctx, stranded, as_of=None)
    tasks.drain(ctx)
    return results

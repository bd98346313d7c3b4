"""When rules run: ``due`` (what ``outreach run`` evaluates now) and
``outreach scheduler`` (APScheduler runs each rule on its cron schedule).
Both read a rule's ``schedule:`` with croniter, the same way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from croniter import croniter
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach import logs
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.planning.launch import launch, sync_rules
from outreach.rules import LoadedRule, RuleSet, load_rules
from outreach.sending import queue
from outreach.store.models import CampaignRun, Rule

log = logs.get_logger("outreach.scheduler")


def _launch(settings: Settings, engine: Engine, names: list[str] | None, console: Any) -> None:
    """Reload the rules (edits take effect without a restart) and launch."""
    try:
        every = load_rules(settings.rules_dir)
        sending = queue.setup(settings, engine)
        sync_rules(engine, every, now=utcnow(), ctx=sending)  # `enabled: false` stops a rule's messages too
        rules = [r for r in every if r.spec.enabled]
        if names is None:
            rules = [r for r in rules if r.spec.schedule is None]
        else:
            rules = [r for r in rules if r.spec.name in names]
        for result in launch(settings, engine, rules, now=utcnow(), simulated=False,
                             ruleset=RuleSet.from_folder(settings.rules_dir), ctx=sending):
            console.print(f"{result.rule}: planned {result.planned}, held out {result.held_out}, "
                          f"queued {result.queued}")
    except Exception:
        log.exception("scheduled launch failed")


class CronExpression(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """A rule's ``schedule:`` (standard cron, UTC) read by croniter, exactly as
    ``due`` reads it. APScheduler's ``CronTrigger.from_crontab`` counts
    weekdays from Monday = 0, so ``0 9 * * 1`` would fire on Tuesdays."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
            return croniter(self.expression, previous_fire_time or now).get_next(datetime)

    def __str__(self) -> str:
        return f"cron[{self.expression}] UTC"


def build_scheduler(settings: Settings, engine: Engine, *, every_minutes: int, console: Any) -> Any:
    scheduler = BlockingScheduler(timezone="UTC")
    for loaded in load_rules(settings.rules_dir):
        spec = loaded.spec
        if spec.enabled and spec.schedule:
            scheduler.add_job(
                _launch, CronExpression(spec.schedule),
                args=(settings, engine, [spec.name], console), id=f"rule:{spec.name}",
                coalesce=True, max_instances=1, misfire_grace_time=3600,
            )
    scheduler.add_job(_launch, "interval", minutes=every_minutes, args=(settings, engine, None, console),
                      id="unscheduled-and-deferred", coalesce=True, max_instances=1)
    return scheduler


def run_scheduler(settings: Settings, engine: Engine, *, every_minutes: int, console: Any) -> None:
    scheduler = build_scheduler(settings, engine, every_minutes=every_minutes, console=console)
    for job in scheduler.get_jobs():
        console.print(f"scheduled {job.id}: {job.trigger}")
    scheduler.start()


def due(engine: Engine, rules: list[LoadedRule], *, now: datetime) -> list[LoadedRule]:
    """Enabled rules whose schedule fired since their last run (no schedule:
    always due; never run: due)."""
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

"""``outreach scheduler``: APScheduler runs each rule on its cron schedule."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from outreach.clock import utcnow
from outreach.config import Settings

log = logging.getLogger("outreach.scheduler")


def _launch(settings: Settings, engine: Engine, names: list[str] | None, console: Any) -> None:
    """Reload the rules (edits take effect without a restart) and launch."""
    from outreach.planner import RuleSet, launch
    from outreach.rules import load_rules

    try:
        rules = [r for r in load_rules(settings.rules_dir) if r.spec.enabled]
        if names is None:
            rules = [r for r in rules if r.spec.schedule is None]
        else:
            rules = [r for r in rules if r.spec.name in names]
        for result in launch(settings, engine, rules, now=utcnow(), simulated=False,
                             ruleset=RuleSet.from_folder(settings.rules_dir)):
            console.print(f"{result.rule}: planned {result.planned}, held out {result.held_out}, "
                          f"queued {result.queued}")
    except Exception:  # noqa: BLE001 - a bad edit must not stop the scheduler
        log.exception("scheduled launch failed")


def build_scheduler(settings: Settings, engine: Engine, *, every_minutes: int, console: Any) -> Any:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    from outreach.rules import load_rules

    scheduler = BlockingScheduler(timezone="UTC")
    for loaded in load_rules(settings.rules_dir):
        spec = loaded.spec
        if spec.enabled and spec.schedule:
            scheduler.add_job(
                _launch, CronTrigger.from_crontab(spec.schedule, timezone="UTC"),
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

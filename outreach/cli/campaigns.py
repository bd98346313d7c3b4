"""``outreach campaign launch``, ``outreach run`` and ``outreach scheduler``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from outreach.cli import control
from outreach.cli.common import (
    FORMAT_OPTION,
    NOW_OPTION,
    app_settings,
    console,
    emit_json,
    err_console,
    friendly,
    now_option,
    open_engine,
)
from outreach.cli.rules import ruleset_for


def _print_launch(results: list[Any], fmt: str) -> None:
    if fmt == "json":
        emit_json(results)
        return
    for r in results:
        if r.run_id is None:
            console.print(f"{escape(r.rule)}: {escape(r.note)}")
            continue
        console.print(
            f"{escape(r.rule)}: planned {r.planned}, held out {r.held_out}, queued {r.queued} (run {r.run_id})"
            + (f" — [yellow]{escape(r.note)}[/]" if r.note else "")
        )


@contextmanager
def _progress(settings: Any, fmt: str) -> Iterator[Callable[[Any, int | None], None] | None]:
    """A progress bar on standard error while the embedded broker delivers
    (on a terminal; never in ``--format json`` nor in a pipe or a log)."""
    from outreach import brokers

    if fmt == "json" or not sys.stderr.isatty() or not brokers.in_process(settings.broker_url):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("delivering"), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
                   TimeRemainingColumn(), console=err_console, transient=True)
    task = bar.add_task("delivering", total=None)

    def advance(tally: Any, total: int | None) -> None:
        done = tally.sent + tally.skipped + tally.failed + tally.retried
        bar.update(task, completed=done, total=max(total or 0, done) or None)

    with bar:
        yield advance


@click.group()
def campaign() -> None:
    """Launch campaigns, see where they are, pause, resume, cancel and retry them.

    \b
    Example:
      outreach campaign launch rules/winback.yaml --now 2026-03-01T09:00:00+08:00
      outreach campaign status --watch
    """


@campaign.command("launch")
@click.argument("rule_files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def campaign_launch(ctx: click.Context, rule_files: tuple[Path, ...], now: str | None, fmt: str) -> None:
    """Plan a rule's messages and queue them. Launching twice plans nothing new.

    Embedded (memory:// broker) the messages are delivered before the command
    returns; with Redis, `outreach worker` processes deliver them.

    \b
    Example:
      outreach campaign launch rules/winback.yaml
      outreach campaign launch rules/birthday.yaml --now 2026-02-28T08:00:00+08:00
    """
    from outreach.channels import check_settings
    from outreach.planning.launch import launch
    from outreach.rules import load_rule

    settings = app_settings(ctx)
    check_settings(settings)
    moment, simulated = now_option(now)
    loaded = [load_rule(p) for p in rule_files]
    with _progress(settings, fmt) as progress:
        results = launch(settings, open_engine(settings), loaded, now=moment, simulated=simulated,
                         ruleset=ruleset_for(rule_files[0]), progress=progress)
    _print_launch(results, fmt)


@click.command("run")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def run(ctx: click.Context, now: str | None, fmt: str) -> None:
    """Evaluate every enabled, due rule in the rules folder and queue what it plans.

    A rule with a `schedule:` is due when its cron time passed since its last
    run; a rule without one is due every time. Also queues messages deferred
    by quiet hours whose window opened, and re-enqueues stranded ones.
    Safe from cron: running it twice plans nothing new.

    \b
    Example:
      */5 * * * *  cd /srv/outreach && outreach run
    """
    from outreach.channels import check_settings
    from outreach.planning.launch import launch, sync_rules
    from outreach.planning.schedule import due
    from outreach.rules import load_rules
    from outreach.sending import queue

    settings = app_settings(ctx)
    check_settings(settings)
    moment, simulated = now_option(now)
    engine = open_engine(settings)
    every = load_rules(settings.rules_dir)
    sending = queue.setup(settings, engine)
    sync_rules(engine, every, now=moment, ctx=sending)  # `enabled: false` in a file stops its messages too
    with _progress(settings, fmt) as progress:
        results = launch(settings, engine, due(engine, every, now=moment), now=moment, simulated=simulated,
                         ruleset=ruleset_for(settings.rules_dir), ctx=sending, progress=progress)
    _print_launch(results, fmt)


@click.command("scheduler")
@click.option("--every", default=5, show_default=True, help="Minutes between runs of unscheduled rules.")
@click.pass_context
@friendly
def scheduler(ctx: click.Context, every: int) -> None:
    """Long-running: run each rule on its `schedule:` (cron), unscheduled rules
    every --every minutes, and queue deferred/stranded messages every minute.

    \b
    Example:
      OUTREACH_BROKER_URL=redis://127.0.0.1:6379/0 outreach scheduler
    """
    from outreach import brokers
    from outreach.channels import check_settings
    from outreach.planning.schedule import run_scheduler

    settings = app_settings(ctx, service=True)
    check_settings(settings)
    brokers.make_broker(settings)  # the broker answers (ServiceError, exit 3, otherwise)
    run_scheduler(settings, open_engine(settings), every_minutes=every, console=console)


for _command in control.COMMANDS:
    campaign.add_command(_command)

COMMANDS = (campaign, run, scheduler)

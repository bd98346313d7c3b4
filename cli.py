"""The ``outreach`` command line.

Every command prints ``--help`` with an example; every error a user can cause
is printed with its location and a hint, never as a traceback (exit code 1).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from outreach.errors import InputError, OutreachError

#: Tables stay readable when output goes to a file or a pipe.
PIPE_WIDTH = 150
console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into located, readable messages and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            for problem in exc.problems:
                err_console.print(f"[bold red]error[/]: {problem}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except OutreachError as exc:
            err_console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper


def _settings(ctx: click.Context) -> Any:
    from outreach.config import load_settings

    return load_settings(**ctx.obj)


def _engine(settings: Any) -> Any:
    """The configured database, migrated if it is the embedded SQLite file."""
    from outreach.store.engine import make_engine, migrate

    engine = make_engine(settings.database_url)
    if settings.embedded:
        migrate(engine)
    else:
        _require_current_schema(engine)
    return engine


def _require_current_schema(engine: Any) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from outreach.store.engine import alembic_config
    from outreach.errors import ConfigError

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise ConfigError(
            f"the database schema is at {current or 'nothing'}, not {head}: "
            "run `outreach db upgrade` first"
        )


def _ruleset(path: Path) -> Any:
    from outreach.rules import RuleSet
    from outreach.rules.loader import rules_folder

    return RuleSet.from_folder(rules_folder(path))


def _now(value: str | None) -> tuple[datetime, bool]:
    from outreach.clock import parse_instant, utcnow

    if value:
        return parse_instant(value), True
    return utcnow(), False


NOW_OPTION = click.option(
    "--now",
    metavar="ISO-TIME",
    help="Evaluate as of this moment instead of the wall clock (e.g. 2026-03-01T09:00:00+08:00).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--database-url", envvar=None, help="Overrides OUTREACH_DATABASE_URL.")
@click.option("--broker-url", envvar=None, help="Overrides OUTREACH_BROKER_URL.")
@click.version_option(package_name="outreach")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, broker_url: str | None) -> None:
    """Outreach: permission-first marketing automation.

    \b
    Example:
      outreach demo                      # synthetic shop, rules, sends, ROI report
      outreach import customers customers.csv
      outreach rules validate rules/
      outreach campaign launch rules/winback.yaml
      outreach report
    """
    ctx.obj = {"database_url": database_url, "broker_url": broker_url}


# ------------------------------------------------------------------ db
@main.group()
def db() -> None:
    """Database schema management.

    \b
    Example:
      OUTREACH_DATABASE_URL=postgresql+psycopg://app@db/outreach outreach db upgrade
    """


@db.command("upgrade")
@click.pass_context
@friendly
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the schema to the newest version.

    \b
    Example:
      outreach db upgrade
    """
    from outreach.store.engine import make_engine, migrate

    settings = _settings(ctx)
    migrate(make_engine(settings.database_url))
    console.print("schema is up to date")


# ------------------------------------------------------------------ import
@main.command("import")
@click.argument("kind", type=click.Choice(["customers", "orders", "consents", "events"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import good rows; write bad ones to a reject file.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Reject file path (implies --skip-invalid).")
@NOW_OPTION
@click.pass_context
@friendly
def import_(ctx: click.Context, kind: str, file: Path, skip_invalid: bool, rejects: Path | None, now: str | None) -> None:
    """Import (upsert) customers, orders, consents or events from a CSV file.

    Nothing is committed if any row is bad, unless --skip-invalid is given.

    \b
    Example:
      outreach import customers customers.csv
      outreach import orders orders.csv --skip-invalid --rejects bad-orders.csv
    """
    from outreach.importing import import_csv

    settings = _settings(ctx)
    moment, _ = _now(now)
    result = import_csv(
        _engine(settings), kind, file, skip_invalid=skip_invalid or rejects is not None, reject_path=rejects,
        now=moment, progress=sys.stderr.isatty(),
    )
    console.print(
        f"{kind}: {result.rows} rows, {result.inserted} inserted, {result.updated} updated, "
        f"{result.rejected} rejected" + (f" (see {result.reject_path})" if result.rejected else "")
    )


# ------------------------------------------------------------------ rules
@main.group()
def rules() -> None:
    """Check and inspect YAML rules.

    \b
    Example:
      outreach rules validate rules/
    """


@rules.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--no-db", is_flag=True, help="Skip the checks that look at today's data.")
@NOW_OPTION
@click.pass_context
@friendly
def rules_validate(ctx: click.Context, path: Path | None, no_db: bool, now: str | None) -> None:
    """Check rule files (and the templates they name); print every problem.

    \b
    Example:
      outreach rules validate              # every rule in rules/
      outreach rules validate rules/winback.yaml
    """
    from outreach.errors import RuleError
    from outreach.sending.render import Renderer
    from outreach.rules import load_rules
    from outreach.planning.warnings import data_warnings
    from outreach.rules.checks import static_warnings, unknown_segments

    settings = _settings(ctx)
    target = path or settings.rules_dir
    loaded = load_rules(target)
    ruleset = _ruleset(target)
    renderer = Renderer(settings=settings)
    problems = []
    for rule in loaded:
        problems += renderer.check(rule.spec.template, rule.spec.channels, rule_file=str(rule.path))
    errors = [p for rule in loaded for p in unknown_segments(rule, ruleset)]
    warnings = static_warnings(loaded, ruleset)
    if not no_db and not errors:
        warnings += data_warnings(loaded, ruleset, engine=_engine(settings), now=_now(now)[0])
    problems += errors
    for warning in warnings:
        err_console.print(f"[bold yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
    if problems:
        raise RuleError(problems)
    console.print(f"[green]ok[/]: {len(loaded)} rule(s) valid in {target}")


@rules.command("preview")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@NOW_OPTION
@click.pass_context
@friendly
def rules_preview(ctx: click.Context, rule_file: Path, now: str | None) -> None:
    """How many customers would get RULE now, by channel, and who would not and why.

    Changes nothing.

    \b
    Example:
      outreach rules preview rules/winback.yaml
      outreach rules preview rules/birthday.yaml --now 2026-02-28T09:00:00+08:00
    """
    from rich.table import Table

    from outreach.planning.preview import preview
    from outreach.rules import load_rule

    settings = _settings(ctx)
    result = preview(_engine(settings), load_rule(rule_file), now=_now(now)[0], ruleset=_ruleset(rule_file))
    table = Table(title=f"Preview of {result.rule} (nothing was changed)", show_header=False)
    rows = [("matched trigger and segment", result.matched),
            *[(f"would receive on {ch}", n) for ch, n in sorted(result.by_channel.items())],
            ("  of which deferred by quiet hours", result.deferred),
            ("held out (control group)", result.held_out),
            ("no consent / no address / suppressed", result.no_consent),
            ("in cooldown", result.cooldown),
            ("over the frequency cap", result.capped),
            ("already planned for this occurrence", result.already_planned)]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    if result.sample:
        sample = Table(title="Sample of recipients")
        for col in ("customer", "name", "channel", "address", "not before (UTC)"):
            sample.add_column(col)
        for r in result.sample:
            sample.add_row(r["customer"], r["name"], r["channel"], r["address"] or "",
                           f"{r['not_before']:%Y-%m-%d %H:%M}" if r["not_before"] else "now")
        console.print(sample)


@rules.command("explain")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--customer", required=True, help="The customer's external id.")
@NOW_OPTION
@click.pass_context
@friendly
def rules_explain(ctx: click.Context, rule_file: Path, customer: str, now: str | None) -> None:
    """For one customer: each condition with its value, and whether and why
    they would receive RULE's message. Changes nothing.

    \b
    Example:
      outreach rules explain rules/winback.yaml --customer C000123
    """
    from rich.tree import Tree

    from outreach.planning.explain import explain
    from outreach.rules import load_rule

    settings = _settings(ctx)
    result = explain(_engine(settings), load_rule(rule_file), customer=customer, now=_now(now)[0],
                     ruleset=_ruleset(rule_file))

    def mark(ok: bool) -> str:
        return "[green]✔ true[/]" if ok else "[red]✘ false[/]"

    def add(node: Any, check: Any) -> None:
        value = "" if check.value is None else f"  [dim]value: {check.value}[/]"
        child = node.add(f"{mark(check.passed)}  {check.label}{value}")
        for kid in check.children:
            add(child, kid)

    tree = Tree(f"[bold]{result.rule}[/] for customer [bold]{result.customer}[/]")
    add(tree, result.trigger)
    if result.segment:
        add(tree.add("segment"), result.segment)
    channels = tree.add("channels (in order of preference)")
    for check in result.channels:
        add(channels, check)
    policy = tree.add("policy")
    for check in result.policy:
        add(policy, check)
    console.print(tree)
    colour = "green" if result.would_send else "yellow"
    console.print(f"[bold {colour}]decision[/]: {result.decision}")


@rules.command("schema")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("docs"),
              show_default=True)
@friendly
def rules_schema(output_dir: Path) -> None:
    """Write the JSON Schemas of rule, policy and segments files (for editors).

    Add `# yaml-language-server: $schema=../docs/rule.schema.json` at the top of
    a rule file and editors autocomplete fields and flag mistakes as you type.

    \b
    Example:
      outreach rules schema --output-dir docs
    """
    from outreach.rules.jsonschema import SCHEMAS, render

    output_dir.mkdir(parents=True, exist_ok=True)
    for kind in SCHEMAS:
        path = output_dir / f"{kind}.schema.json"
        path.write_text(render(kind), encoding="utf-8")
        console.print(f"wrote {path}")


@main.command("scheduler")
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
    from outreach.planning.schedule import run_scheduler

    run_scheduler(_settings(ctx), _engine(_settings(ctx)), every_minutes=every, console=console)


# ------------------------------------------------------------------ campaign
@main.group()
def campaign() -> None:
    """Launch campaigns.

    \b
    Example:
      outreach campaign launch rules/winback.yaml --now 2026-03-01T09:00:00+08:00
    """


def _print_launch(results: list[Any]) -> None:
    for r in results:
        console.print(
            f"{r.rule}: planned {r.planned}, held out {r.held_out}, queued {r.queued} (run {r.run_id})"
        )


@campaign.command("launch")
@click.argument("rule_files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@NOW_OPTION
@click.pass_context
@friendly
def campaign_launch(ctx: click.Context, rule_files: tuple[Path, ...], now: str | None) -> None:
    """Plan a rule's messages and queue them. Launching twice plans nothing new.

    Embedded (memory:// broker) the messages are delivered before the command
    returns; with Redis, `outreach worker` processes deliver them.

    \b
    Example:
      outreach campaign launch rules/winback.yaml
      outreach campaign launch rules/birthday.yaml --now 2026-02-28T08:00:00+08:00
    """
    from outreach.planning.launch import launch
    from outreach.rules import load_rule

    settings = _settings(ctx)
    moment, simulated = _now(now)
    loaded = [load_rule(p) for p in rule_files]
    _print_launch(launch(settings, _engine(settings), loaded, now=moment, simulated=simulated,
                         ruleset=_ruleset(rule_files[0])))


@main.command("run")
@NOW_OPTION
@click.pass_context
@friendly
def run(ctx: click.Context, now: str | None) -> None:
    """Evaluate every enabled, due rule in the rules folder and queue what it plans.

    A rule with a `schedule:` is due when its cron time passed since its last
    run; a rule without one is due every time. Also queues messages deferred
    by quiet hours whose window opened, and re-enqueues stranded ones.
    Safe from cron: running it twice plans nothing new.

    \b
    Example:
      */5 * * * *  cd /srv/outreach && outreach run
    """
    from outreach.planning.launch import launch
    from outreach.planning.schedule import due
    from outreach.rules import load_rules

    settings = _settings(ctx)
    moment, simulated = _now(now)
    engine = _engine(settings)
    loaded = due(engine, load_rules(settings.rules_dir), now=moment)
    _print_launch(launch(settings, engine, loaded, now=moment, simulated=simulated,
                         ruleset=_ruleset(settings.rules_dir)))


# ------------------------------------------------------------------ worker / serve
@main.command("worker")
@click.option("--processes", default=2, show_default=True, help="Worker processes.")
@click.option("--threads", default=8, show_default=True, help="Threads per process.")
@click.pass_context
@friendly
def worker(ctx: click.Context, processes: int, threads: int) -> None:
    """Run Dramatiq workers that deliver queued messages (needs a Redis broker).

    \b
    Example:
      OUTREACH_BROKER_URL=redis://127.0.0.1:6379/0 outreach worker --processes 4
    """
    from outreach.errors import ConfigError

    settings = _settings(ctx)
    from outreach import brokers

    if brokers.in_process(settings.broker_url):
        raise ConfigError(
            "the embedded broker (memory://) delivers inside `campaign launch`; "
            "set OUTREACH_BROKER_URL=redis://… to run separate workers"
        )
    for key, value in ctx.obj.items():
        if value:
            os.environ[f"OUTREACH_{key.upper()}"] = value
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "dramatiq", "outreach.sending.worker", "--processes", str(processes),
         "--threads", str(threads), "--queues", "outreach-send"],
    )


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.pass_context
@friendly
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Run the webhook server: unsubscribe, open pixel, click redirect, orders, SMS.

    \b
    Example:
      OUTREACH_PUBLIC_URL=https://t.example.com outreach serve --host 0.0.0.0 --port 8000
    """
    from outreach.webhooks.app import serve as run_server

    settings = _settings(ctx)
    run_server(settings, _engine(settings), host=host, port=port)


# ------------------------------------------------------------------ report
@main.command("report")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@friendly
def report(ctx: click.Context, fmt: str) -> None:
    """Print each rule's sends, responses, attributed revenue, cost and ROI.

    \b
    Example:
      outreach report
      outreach report --format json > roi.json
    """
    import json

    from outreach.reporting.roi import build_report, render_table

    settings = _settings(ctx)
    reports = build_report(_engine(settings))
    if fmt == "json":
        click.echo(json.dumps([{**r.__dict__, "revenue": str(r.revenue), "cost": str(r.cost),
                                 "roi": r.roi, "lift_pp": r.lift} for r in reports], indent=2))
    else:
        console.print(render_table(reports))


# ------------------------------------------------------------------ demo
@main.command("demo")
@click.option("--customers", default=3000, show_default=True, help="Synthetic customers to create.")
@click.option("--dir", "directory", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True)
@NOW_OPTION
@click.pass_context
@friendly
def demo(ctx: click.Context, customers: int, directory: Path, seed: int, now: str | None) -> None:
    """Build a synthetic shop, run the shipped rules, simulate responses, print ROI.

    Uses its own SQLite file and outbox under --dir; nothing else is touched.

    \b
    Example:
      outreach demo
      outreach demo --customers 10000 --dir /tmp/demo
    """
    from outreach.demo.run import default_demo_time, run_demo

    moment = _now(now)[0] if now else default_demo_time()
    run_demo(directory=directory, customers=customers, seed=seed, now=moment, console=console)


if __name__ == "__main__":
    main()

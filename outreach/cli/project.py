"""``outreach init`` and ``outreach demo``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from outreach.cli.common import NOW_OPTION, app_settings, console, friendly, now_option


@click.command("init")
@click.argument("directory", metavar="DIR", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite starter files that already exist.")
@friendly
def init(directory: Path, force: bool) -> None:
    """Write a starter project into DIR (default: here): example rules with a
    policy and named segments, their templates, JSON Schemas for editors and
    an outreach.toml. Refuses to overwrite anything unless --force.

    \b
    Example:
      outreach init my-shop && cd my-shop && outreach demo
    """
    from outreach.project import init_project

    written = init_project(directory, force=force)
    console.print(f"[green]wrote[/] {len(written)} files into {escape(str(directory))}/: "
                  "rules/, templates/, schemas/, outreach.toml")
    console.print("next: [bold]outreach rules validate[/], then [bold]outreach demo[/] "
                  "or [bold]outreach import customers customers.csv[/]")


@click.command("demo")
@click.option("--customers", default=10000, show_default=True,
              help="Synthetic customers to create (10,000: control groups big enough to measure a lift, "
                   "in about 15 s).")
@click.option("--dir", "directory", default="demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True)
@NOW_OPTION
@click.pass_context
@friendly
def demo(ctx: click.Context, customers: int, directory: Path, seed: int, now: str | None) -> None:
    """Build a synthetic shop, run the rules, simulate responses, print ROI,
    and check the report recovers the lift the simulated orders carry.

    Uses the rules and templates of the working folder, or the shipped
    examples when it has none; its own SQLite file and outbox under --dir;
    nothing else is touched. Needs Faker (pip install 'outreach[demo]').

    \b
    Example:
      outreach demo
      outreach demo --customers 10000 --dir /tmp/demo
    """
    from outreach.demo.run import default_demo_time, run_demo
    from outreach.project import demo_folders

    settings = app_settings(ctx)
    folders = demo_folders(settings.rules_dir, settings.templates_dir)
    if folders.shipped:
        console.print(f"[dim]no {escape(str(settings.rules_dir))}/ here: using the shipped example rules "
                      "(`outreach init` writes them into a project of your own)[/]")
    moment = now_option(now)[0] if now else default_demo_time()
    run_demo(directory=directory, customers=customers, seed=seed, now=moment, console=console,
             rules_dir=folders.rules, templates_dir=folders.templates)


COMMANDS = (init, demo)

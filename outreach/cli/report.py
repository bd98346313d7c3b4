"""``outreach report``."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import click

from outreach.cli.common import NOW_OPTION, app_settings, console, emit_json, friendly, now_option, open_engine

#: The dimensions ``--split`` offers (``reporting.document.DIMENSIONS``; listed here so --help needs no import).
SPLIT_DIMENSIONS = ("channel", "customer_type", "lifecycle_stage", "rfm_segment", "value_tier", "locale")


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date like 2026-11-01 (or a time like 2026-11-01T08:00)",
                                 ctx=ctx, param=param) from None


def _currency(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Z]{3}", value):
        raise click.BadParameter(f"'{value}' is not a currency code like CNY or USD", ctx=ctx, param=param)
    return value


@click.command("report")
@click.option("--surveys", is_flag=True,
              help="Survey results instead: NPS and satisfaction per rule and customer type.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table for people; json (the document of docs/report.md) or csv (one row per rule, variant "
                   "and split value) for scripts, written to standard output. Example: --format csv > roi.csv")
@click.option("--since", callback=_day, metavar="DATE",
              help="Only messages planned on or after this date (UTC). Example: --since 2026-11-01")
@click.option("--until", callback=_day, metavar="DATE",
              help="Only messages planned before this date (UTC). Example: --until 2026-12-01")
@click.option("--split", "split", type=click.Choice(SPLIT_DIMENSIONS), default=None,
              help="Also show each rule per value of this dimension (customer_stats ones as classified now). "
                   "Example: --split customer_type")
@click.option("--currency", callback=_currency, metavar="CODE",
              help="The reporting currency (overrides report_currency; its rate must be in "
                   "rules/currency.yaml). Example: --currency USD")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the report as one self-contained page with charts (works offline, prints on A4) "
                   "instead of printing it. Example: --html report.html")
@NOW_OPTION
@click.pass_context
@friendly
def report(ctx: click.Context, surveys: bool, fmt: str, since: datetime | None, until: datetime | None,
           split: str | None, currency: str | None, html_path: Path | None, now: str | None) -> None:
    """Per rule: sent vs held-out control group — conversion, revenue per
    customer, incremental conversions, revenue and ROI with 95% intervals and
    a verdict; then last-touch attribution and redeemed codes, A/B variants,
    and splits. Every figure is explained in docs/report.md.

    \b
    Example:
      outreach report
      outreach report --since 2026-11-01 --until 2026-12-01 --split channel
      outreach report --format json > roi.json
      outreach report --format csv > roi.csv
      outreach report --html report.html
      outreach report --surveys
    """
    settings = app_settings(ctx)
    if surveys:
        from outreach.reporting import surveys as survey_report

        rows = survey_report.survey_results(open_engine(settings))
        if fmt == "json":
            emit_json([vars(r) for r in rows])
        else:
            console.print(survey_report.render_table(rows))
        return
    from outreach.reporting.document import build_document
    from outreach.reporting.views import render_csv, render_tables

    if currency is not None:
        settings = settings.model_copy(update={"report_currency": currency})
    moment, _ = now_option(now)
    # The table shows one split at most: only that one is computed; json, csv and the page carry them all.
    # Revenue per day is shown by the page and carried by json only.
    splits = ([split] if split else []) if fmt == "table" and html_path is None else ([split] if split else None)
    doc = build_document(open_engine(settings), settings, now=moment, since=since, until=until, splits=splits,
                         timeline=html_path is not None or fmt == "json")
    if html_path is not None:
        from outreach.reporting.html import render_html

        html_path.write_text(render_html(doc), encoding="utf-8")
        console.print(f"wrote {html_path} — one page, no network needed: open it in a browser")
    elif fmt == "json":
        emit_json(doc)
    elif fmt == "csv":
        click.echo(render_csv(doc), nl=False)
    else:
        for part in render_tables(doc, split=split):
            console.print(part)


COMMANDS = (report,)

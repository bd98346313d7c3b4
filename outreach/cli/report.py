"""``outreach report``."""

from __future__ import annotations

import click

from outreach.cli.common import FORMAT_OPTION, app_settings, console, emit_json, friendly, open_engine


@click.command("report")
@click.option("--surveys", is_flag=True,
              help="Survey results instead: NPS and satisfaction per rule and customer type.")
@FORMAT_OPTION
@click.pass_context
@friendly
def report(ctx: click.Context, surveys: bool, fmt: str) -> None:
    """Print each rule's sends, responses, attributed revenue, cost and ROI.

    \b
    Example:
      outreach report
      outreach report --format json > roi.json
      outreach report --surveys
    """
    from outreach.reporting.roi import build_report, render_table

    settings = app_settings(ctx)
    if surveys:
        from outreach.reporting import surveys as survey_report

        rows = survey_report.survey_results(open_engine(settings))
        if fmt == "json":
            emit_json([vars(r) for r in rows])
        else:
            console.print(survey_report.render_table(rows))
        return
    reports = build_report(open_engine(settings))
    if fmt == "json":
        emit_json([{**vars(r), "roi": r.roi, "lift_pp": r.lift} for r in reports])
    else:
        console.print(render_table(reports))


COMMANDS = (report,)

"""The ``outreach`` command line (click).

    common.py     settings and logging, the database, errors for people, --format json
    project.py    init, demo
    data.py       import, db upgrade
    rules.py      rules validate | preview | explain | schema
    campaigns.py  campaign launch, run, scheduler
    services.py   worker, serve
    report.py     report
    customers.py  customers export | erase (the rights of access and erasure)
    coupons.py    coupons generate | import | list | export (pools of personal codes)

Every command prints ``--help`` with an example. Every error reaches the
user as one located line with a hint, and the exit code says what kind it
was: 1 data or rule errors, 2 a wrong command line, 3 configuration or an
unreachable service, 4 a bug.
"""

from __future__ import annotations

import click

from outreach.cli import campaigns, coupons, customers, data, project, report, rules, services
from outreach.logs import FORMATS, LEVELS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--database-url", help="Overrides OUTREACH_DATABASE_URL.")
@click.option("--broker-url", help="Overrides OUTREACH_BROKER_URL.")
@click.option("--log-level", type=click.Choice(LEVELS), help="Overrides OUTREACH_LOG_LEVEL (default: warning; "
              "info for worker, serve and scheduler).")
@click.option("--log-format", type=click.Choice(FORMATS), help="Overrides OUTREACH_LOG_FORMAT (default: console).")
@click.version_option(package_name="outreach")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, broker_url: str | None, log_level: str | None,
         log_format: str | None) -> None:
    """Outreach: permission-first marketing automation.

    \b
    Example:
      outreach init my-shop && cd my-shop   # a starter project
      outreach demo                         # synthetic shop, rules, sends, ROI report
      outreach import customers customers.csv
      outreach rules validate
      outreach campaign launch rules/winback.yaml
      outreach report
    """
    ctx.obj = {
        "overrides": {"database_url": database_url, "broker_url": broker_url},
        "log_level": log_level,
        "log_format": log_format,
    }


for _module in (project, data, rules, campaigns, services, report, customers, coupons):
    for _command in _module.COMMANDS:
        main.add_command(_command)

"""``outreach customers export | erase``: the customer's rights of access and
erasure (GDPR art. 15 and 17, PIPL art. 45 and 47; docs/privacy.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from outreach.cli.common import (
    FORMAT_OPTION,
    NOW_OPTION,
    app_settings,
    console,
    emit_json,
    friendly,
    now_option,
    open_engine,
    to_json,
)

#: An export holds personal data: the file is readable by its owner only.
EXPORT_FILE_MODE = 0o600


@click.group()
def customers() -> None:
    """What is held about one customer: export it, or erase it.

    \b
    Example:
      outreach customers export C001 --output C001.json
      outreach customers erase C001 --dry-run
    """


@customers.command("export")
@click.argument("external_id", metavar="ID")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON to this file (readable by you only) instead of standard output.")
@NOW_OPTION
@click.pass_context
@friendly
def export(ctx: click.Context, external_id: str, output: Path | None, now: str | None) -> None:
    """Everything held about customer ID (their external_id, as imported) as
    JSON: profile, tags, consent ledger with evidence, suppressions, orders,
    events, messages, tracking events, statistics, holdouts, memberships.
    The shape is described in docs/privacy.md (schema_version 1).

    \b
    Example:
      outreach customers export C001 > C001.json
      outreach customers export C001 --output requests/C001.json
    """
    from outreach.clock import to_naive_utc
    from outreach.store.engine import transaction
    from outreach.store.export import export_customer

    moment = to_naive_utc(now_option(now)[0])
    with transaction(open_engine(app_settings(ctx))) as session:
        text = to_json(export_customer(session, external_id, now=moment))
    if output is None:
        click.echo(text)
        return
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, EXPORT_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    console.print(f"customer {external_id}: exported to {output}")


@customers.command("erase")
@click.argument("external_id", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def erase(ctx: click.Context, external_id: str, dry_run: bool, yes: bool, now: str | None, fmt: str) -> None:
    """Erase customer ID's personal data in one transaction: profile, tags,
    addresses of messages, response payloads, event properties,
    memberships, the text of their coupon codes. Kept, anonymized: orders
    and coupon redemptions (revenue), the consent ledger
    (evidence scrubbed) and the opt-out — each address as a hash, so an
    import that brings it back is suppressed. An audit line records what
    was erased and when (no personal data).

    \b
    Example:
      outreach customers erase C001 --dry-run   # what would be removed
      outreach customers erase C001             # asks before erasing
      outreach customers erase C001 --yes       # scripts: no question
    """
    from outreach.clock import to_naive_utc
    from outreach.store.erasure import erase as erase_customer

    engine = open_engine(app_settings(ctx))
    moment = to_naive_utc(now_option(now)[0])
    if dry_run or not yes:
        planned = erase_customer(engine, external_id, now=moment, dry_run=True)
        _show(external_id, planned, fmt)
        if dry_run:
            return
        if not click.confirm(f"Erase customer {external_id}? This cannot be undone", default=False,
                             err=True):
            console.print("nothing erased")
            return
    _show(external_id, erase_customer(engine, external_id, now=moment), fmt)


def _show(external_id: str, report: Any, fmt: str) -> None:
    if fmt == "json":
        emit_json({"customer": external_id, "dry_run": report.dry_run, **report.summary()})
        return
    verb = "would remove" if report.dry_run else "erased"
    summary = report.summary()
    console.print(f"customer {external_id} (row {report.customer_id}): {verb}")
    console.print(f"  profile fields: {', '.join(report.fields) or 'none'}; tags: {report.tags}")
    for key, label in (("messages_anonymized", "messages: address and subject"),
                       ("tracking_events_scrubbed", "tracking events: payloads"),
                       ("events_scrubbed", "custom events: properties"),
                       ("memberships_removed", "memberships"),
                       ("preferences_removed", "preferences: topics off, breaks, opt-in requests"),
                       ("preference_records_scrubbed", "preference evidence scrubbed"),
                       ("coupon_codes_erased", "coupon codes given to them (redemptions kept)"),
                       ("consent_records_scrubbed", "consent evidence scrubbed"),
                       ("consents_revoked", "consents revoked"),
                       ("suppressions_replaced", "suppressions replaced by hashes"),
                       ("addresses_hashed", "addresses kept as hashes (never contacted again)"),
                       ("other_customers_suppressed", "addresses suppressed on other customers")):
        console.print(f"  {label}: {summary[key]}")
    console.print(f"  kept for the books: {report.orders_kept} order(s), revenue {report.revenue_kept}")


COMMANDS = (customers,)

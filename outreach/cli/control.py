"""``outreach campaign status | pause | resume | cancel | retry``."""

from __future__ import annotations

import time

import click
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from outreach.cli.common import FORMAT_OPTION, app_settings, console, emit_json, friendly, open_engine
from outreach.clock import utcnow
from outreach.store import campaigns
from outreach.store.engine import transaction

#: Columns of the status table, in the order a message moves.
COLUMNS = ("deferred", "queued", "sending", "retrying", "sent", "failed", "no code", "skipped", "cancelled",
           "held_out")
#: Seconds between refreshes of ``status --watch``.
WATCH_S = 2.0


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return "done" if seconds == 0 else "<1 s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")


def _table(rows: list[campaigns.Status]) -> Table:
    table = Table(title=f"Campaigns at {utcnow():%Y-%m-%d %H:%M:%S} UTC")
    table.add_column("rule")
    table.add_column("state")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_column("sent/s", justify="right")
    table.add_column("ETA", justify="right")
    for row in rows:
        state = row.state + (f" ({escape(row.pause_reason)})" if row.pause_reason else "")
        table.add_row(escape(row.rule), state, *[f"{row.counts.get(c, 0):,}" for c in COLUMNS],
                      f"{row.rate_per_second:,.1f}", _eta(row.eta_seconds))
    return table


def _notes(rows: list[campaigns.Status]) -> list[str]:
    return [f"[yellow]{escape(r.rule)}[/]: {r.redelivered:,} message(s) were taken back from a worker that "
            "stopped mid-send and sent again; each may have arrived twice" for r in rows if r.redelivered] + [
            f"[yellow]{escape(r.rule)}[/]: {r.counts['no code']:,} message(s) not sent: the offer's pool had no "
            f"coupon code left (add codes with `outreach coupons generate|import`, then `outreach campaign retry "
            f"{escape(r.rule)}`)" for r in rows if r.counts.get("no code")]


@click.command("status")
@click.argument("rule", required=False)
@click.option("--watch", is_flag=True, help="Refresh every 2 s until nothing is left to send (Ctrl-C stops).")
@FORMAT_OPTION
@click.pass_context
@friendly
def status(ctx: click.Context, rule: str | None, watch: bool, fmt: str) -> None:
    """Where each campaign's messages are: deferred by quiet hours, queued,
    being sent, waiting to retry, sent, failed, not sent for want of a coupon
    code (no code), skipped, cancelled, held out;
    the rate of the last minute and when the queue will be through.

    \b
    Example:
      outreach campaign status
      outreach campaign status winback --watch
    """
    engine = open_engine(app_settings(ctx))

    def read() -> list[campaigns.Status]:
        with transaction(engine) as session:
            return campaigns.status(session, now=utcnow(), rule=rule)

    rows = read()
    if fmt == "json":
        emit_json([{**vars(r), "outstanding": r.outstanding, "rate_per_second": r.rate_per_second,
                    "eta_seconds": r.eta_seconds} for r in rows])
        return
    if not watch:
        console.print(_table(rows))
        for note in _notes(rows):
            console.print(note)
        return
    with Live(_table(rows), console=console, refresh_per_second=2) as live:
        try:
            while any(r.outstanding for r in rows):
                time.sleep(WATCH_S)
                rows = read()
                live.update(Group(_table(rows), *_notes(rows)))
        except KeyboardInterrupt:
            pass


@click.command("pause")
@click.argument("rule")
@click.option("--reason", default="paused by hand", show_default=True)
@click.pass_context
@friendly
def pause(ctx: click.Context, rule: str, reason: str) -> None:
    """Stop sending RULE's messages: workers leave them queued and nothing new
    is planned until `campaign resume`.

    \b
    Example:
      outreach campaign pause winback --reason "wrong coupon in the template"
    """
    engine = open_engine(app_settings(ctx))
    with transaction(engine) as session:
        found = campaigns.rule_named(session, rule)
        done = campaigns.pause_rule(session, found.id, reason=reason, now=utcnow())
    console.print(f"{escape(rule)}: paused" if done else f"{escape(rule)}: was paused already")


@click.command("resume")
@click.argument("rule")
@click.pass_context
@friendly
def resume(ctx: click.Context, rule: str) -> None:
    """Send RULE's queued messages again after a pause (also one it paused by itself).

    \b
    Example:
      outreach campaign resume winback
    """
    from outreach.sending import queue

    settings = app_settings(ctx)
    engine = open_engine(settings)
    with transaction(engine) as session:
        queued = campaigns.resume(session, rule)
    sending = queue.setup(settings, engine)
    queue.enqueue(sending, queued, as_of=None)
    queue.drain(sending)
    console.print(f"{escape(rule)}: resumed, {len(queued):,} queued message(s) handed to the workers")


@click.command("cancel")
@click.argument("rule")
@click.option("--reason", default="cancelled by hand", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
@friendly
def cancel(ctx: click.Context, rule: str, reason: str, yes: bool) -> None:
    """End every planned or queued message of RULE (they are never sent;
    messages being sent finish, sent ones stay sent).

    \b
    Example:
      outreach campaign cancel winback --yes
    """
    engine = open_engine(app_settings(ctx))
    if not yes:
        click.confirm(f"Cancel every unsent message of {rule}?", abort=True)
    with transaction(engine) as session:
        ended = campaigns.cancel(session, rule, now=utcnow(), reason=reason)
    console.print(f"{escape(rule)}: {ended:,} message(s) cancelled")


@click.command("retry")
@click.argument("rule")
@click.pass_context
@friendly
def retry(ctx: click.Context, rule: str) -> None:
    """Send RULE's failed messages again — after the template or the provider
    was fixed — with a fresh count of attempts.

    \b
    Example:
      outreach campaign retry winback
    """
    from outreach.sending import queue

    settings = app_settings(ctx)
    engine = open_engine(settings)
    with transaction(engine) as session:
        queued = campaigns.retry_failed(session, rule, now=utcnow())
    sending = queue.setup(settings, engine)
    queue.enqueue(sending, queued, as_of=None)
    queue.drain(sending)
    console.print(f"{escape(rule)}: {len(queued):,} failed message(s) queued again")


COMMANDS = (status, pause, resume, cancel, retry)

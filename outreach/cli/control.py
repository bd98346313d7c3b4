"""``outreach campaign status | pause | resume | cancel | retry``."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from outreach.cli.common import (
    FORMAT_OPTION,
    NOW_OPTION,
    app_settings,
    console,
    emit_json,
    friendly,
    now_option,
    open_engine,
)
from outreach.clock import utcnow
from outreach.store import campaigns, holdout
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
    notes = [f"[yellow]{escape(r.rule)}[/]: {r.redelivered:,} message(s) were taken back from a worker that "
             "stopped mid-send and sent again; each may have arrived twice" for r in rows if r.redelivered]
    notes += [_ab_note(r.rule, r.ab_test) for r in rows if r.ab_test is not None]
    notes += [f"{escape(r.rule)}: its control group is drawn with the legacy scheme (it overlaps other rules' "
              f"groups); move it between experiments with `outreach campaign regroup {escape(r.rule)}`"
              for r in rows if r.assignment == holdout.LEGACY]
    notes += [f"[yellow]{escape(r.rule)}[/]: {r.counts['no code']:,} message(s) not sent: the offer's pool had no "
              f"coupon code left (add codes with `outreach coupons generate|import`, then `outreach campaign retry "
              f"{escape(r.rule)}`)" for r in rows if r.counts.get("no code")]
    return notes


def _ab_note(rule: str, test: dict[str, Any]) -> str:
    """One line per A/B test: each arm's sends and conversion so far, and the decision."""
    arms = []
    for arm in test["variants"]:
        name = "control" if arm["held_out"] else (arm["variant"] or "no variant")
        rate = arm["conversion_rate"]
        counted = f"{arm['sent']:,} sent" if not arm["held_out"] else f"{arm['measured']:,} held out"
        lift = arm["lift_vs_control"]
        arms.append(f"{escape(name)} {counted}" + (f", {rate:.1%} converted" if rate is not None else "") + (
            f" ({lift['estimate'] * 100:+.1f} pp vs control, 95% [{lift['low'] * 100:+.1f}, {lift['high'] * 100:+.1f}])"
            if lift else ""))
    decision = test["decision"]
    if decision is None:
        verdict = "no decision yet"
    else:
        verdict = (f"winner {escape(decision['winner'])}" if decision["winner"] else "no winner") + (
            f" (decided {decision['decided_at']:%Y-%m-%d %H:%M}): {escape(decision['reason'])}")
    return f"[bold]{escape(rule)}[/] A/B: " + " · ".join(arms) + f" — {verdict}"


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


@click.command("regroup")
@click.argument("rule")
@click.option("--force", is_flag=True, help="Move it even while messages are in flight or inside their window.")
@NOW_OPTION
@click.pass_context
@friendly
def regroup(ctx: click.Context, rule: str, force: bool, now: str | None) -> None:
    """Draw RULE's control group (and A/B variants) with the independent scheme
    from now on: a hash of the rule and the customer, so it overlaps any other
    rule's group only by chance (two 10 % groups share 1 %).

    Rules created before Outreach had it keep the legacy scheme, whose groups
    overlap by an amount that depends on the rules' names, so that nobody
    switches groups mid-experiment. Run this between experiments: it refuses
    while the rule has messages not yet sent or inside their attribution
    window (pause the campaign, wait for the windows to close).

    \b
    Example:
      outreach campaign pause winback --reason "new control group"
      outreach campaign regroup winback          # once the last window has closed
      outreach campaign resume winback
    """
    engine = open_engine(app_settings(ctx))
    moment = now_option(now)[0]
    with transaction(engine) as session:
        before = holdout.regroup(session, campaigns.rule_named(session, rule), now=moment, force=force)
    if before == holdout.HASHED:
        console.print(f"{escape(rule)}: its groups are already independent ({holdout.HASHED}); nothing changed")
    else:
        console.print(f"{escape(rule)}: groups drawn with {holdout.HASHED} from its next plan on (was {before})")


COMMANDS = (status, pause, resume, cancel, retry, regroup)

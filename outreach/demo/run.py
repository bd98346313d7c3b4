"""``outreach demo``: the whole product on synthetic data, in under a minute.

1. generate a tea shop (customers, orders, consents) as CSV files;
2. import them with the real importer into a fresh SQLite database;
3. launch the shipped rules; the in-process worker delivers to the file outbox;
4. replay **simulated** customer responses — opens, clicks, unsubscribes,
   STOP replies and orders — through the same webhook app ``outreach serve``
   runs, using the links and headers in the delivered messages; the orders
   carry a known lift per rule (``responses.INJECTED``);
5. print the ROI report, and whether it recovered the injected lift.

Rules that measure a lift (``holdout_percent`` above 0) hold out
:data:`DEMO_HOLDOUT_PERCENT` of their audience in the demo instead of their
own share (10 % in the shipped rules): an even split measures a lift most
precisely for a given number of customers, and a demo shop's 10 % control
groups are tens of customers — too few to tell a lift from noise.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.config import load_settings
from outreach.demo.data import generate
from outreach.demo.recovery import Recovery, recovery_rows, render_recovery, summary
from outreach.demo.responses import (
    DEFAULT_INJECTED,
    DEMO_TWILIO_TOKEN,
    INJECTED,
    expected_lift_pp,
    replay_responses,
)
from outreach.importing import import_csv
from outreach.planning.launch import launch
from outreach.reporting.document import build_document
from outreach.reporting.views import render_tables
from outreach.rules import LoadedRule, RuleSet, load_rules
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Message
from outreach.webhooks.server import free_port

#: Later runs (hours after the launch) that send messages deferred by quiet hours.
LATER_PASSES_H = (8, 16)
#: The share of each measuring rule's audience the demo holds out (see above).
DEMO_HOLDOUT_PERCENT = 50.0


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo found: the report's document, the recovery check, the
    injected table it used, and the lift each rule's orders were expected to
    show once other rules' orders in the same windows are counted."""

    document: dict[str, Any]
    recovery: list[Recovery]
    injected: dict[str, tuple[float, float]]
    expected_pp: dict[str, float]
    orders: int


def demo_rules(rules: list[LoadedRule]) -> list[LoadedRule]:
    """The rules with :data:`DEMO_HOLDOUT_PERCENT` held out where they hold any out."""
    return [dataclasses.replace(r, spec=r.spec.model_copy(update={"holdout_percent": DEMO_HOLDOUT_PERCENT}))
            if r.spec.holdout_percent > 0 else r for r in rules]


def run_demo(*, directory: Path, customers: int, seed: int, now: datetime, console: Console,
             rules_dir: Path, templates_dir: Path) -> DemoOutcome:
    """The demo in ``directory`` (replaced), with the rules and templates given."""
    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    settings = load_settings(
        public_url=f"http://127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{directory / 'outreach.db'}",
        broker_url="memory://",
        outbox_dir=directory / "outbox",
        email_transport="outbox",
        sms_transport="outbox",
        twilio_auth_token=DEMO_TWILIO_TOKEN,
        rules_dir=rules_dir,
        templates_dir=templates_dir,
    )
    engine = make_engine(settings.database_url)
    migrate(engine)

    console.rule("[bold]1. Synthetic shop data")
    files = generate(directory / "data", customers=customers, now=now, seed=seed)
    for kind, path in (("customers", files.customers), ("orders", files.orders), ("consents", files.consents)):
        result = import_csv(engine, kind, path, now=now)  # type: ignore[arg-type]
        console.print(f"imported {result.rows:>6} {kind} from {path}")

    console.rule(f"[bold]2. Launch the shipped rules as of {now:%Y-%m-%d %H:%M} UTC")
    rules = demo_rules(load_rules(settings.rules_dir))
    ruleset = RuleSet.from_folder(settings.rules_dir)
    console.print(f"[dim]the demo holds out {DEMO_HOLDOUT_PERCENT:g}% of each rule's audience as its control "
                  "group (your rules' holdout_percent is kept outside the demo): enough to measure a lift[/]")
    for r in launch(settings, engine, rules, now=now, simulated=True, ruleset=ruleset):
        console.print(f"{r.rule:>16}: planned {r.planned:>4}, held out {r.held_out:>3} (control group), "
                      f"sent now {r.queued:>4}" + (f" — {r.note}" if r.note else ""))
    for hours in LATER_PASSES_H:
        later = now + timedelta(hours=hours)
        launch(settings, engine, [], now=later, simulated=True, ruleset=ruleset)
        console.print(f"run at {later:%H:%M} UTC: sent the messages deferred by quiet hours whose "
                      "local send window opened")
    with Session(engine) as session:
        counts = dict(session.execute(
            select(Message.status, func.count()).group_by(Message.status)).all())
    console.print(", ".join(f"{n} {status.value}" for status, n in sorted(counts.items())) +
                  f" — outbox: {settings.outbox_dir}/")

    console.rule("[bold yellow]3. SIMULATED responses (synthetic, for demonstration only)")
    injected = {r.spec.name: INJECTED.get(r.spec.name, DEFAULT_INJECTED) for r in rules}
    replayed = replay_responses(settings, engine, now=now, seed=seed, injected=injected)
    console.print(", ".join(f"{v} {k}" for k, v in replayed.items()) +
                  " — orders labelled source 'simulated', events 'simulated'")

    console.rule("[bold]4. ROI report")
    # Judged once every window has closed (the simulated orders run up to the longest window's end).
    as_of = now + timedelta(hours=max(LATER_PASSES_H), days=max(
        (r.spec.attribution_window_days for r in rules), default=0) + 1)
    document = build_document(engine, settings, now=as_of, splits=[])
    for part in render_tables(document):
        console.print(part)

    console.rule("[bold]5. Did the report recover the injected lift?")
    rows = recovery_rows(document, injected)
    console.print(render_recovery(rows))
    console.print(summary(rows))
    expected = expected_lift_pp(engine, injected)
    if expected:
        moved = max(abs(expected[r.rule] - r.injected_pp) for r in rows if r.rule in expected)
        console.print(f"[dim]other rules' simulated orders for the same customers fall in these windows too: "
                      f"they move the expected lift by at most {moved:.2f} pp[/]")
    console.print(
        f"[dim]demo data and outbox in {directory}/ — finished in "
        f"{time.perf_counter() - started:.1f} s. Responses above are simulated.[/]"
    )
    return DemoOutcome(document=document, recovery=rows, injected=injected, expected_pp=expected,
                       orders=replayed["orders"])


def default_demo_time() -> datetime:
    """Today at 02:00 UTC — 10:00 in Shanghai, where most demo customers live."""
    return utcnow().replace(hour=2, minute=0, second=0, microsecond=0)

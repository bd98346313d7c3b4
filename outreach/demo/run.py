"""``outreach demo``: the whole product on synthetic data, in under a minute.

1. generate a tea shop (customers, orders, consents) as CSV files;
2. import them with the real importer into a fresh SQLite database;
3. launch the shipped rules; the in-process worker delivers to the file outbox;
4. replay **simulated** customer responses — opens, clicks, unsubscribes,
   STOP replies and orders — through the same webhook app ``outreach serve``
   runs, using the links and headers in the delivered messages;
5. print the ROI report.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.config import load_settings
from outreach.demo.data import generate
from outreach.demo.responses import DEMO_TWILIO_TOKEN, replay_responses
from outreach.importing import import_csv
from outreach.planning.launch import launch
from outreach.reporting.document import build_document
from outreach.reporting.views import render_tables
from outreach.rules import RuleSet, load_rules
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Message
from outreach.webhooks.server import free_port

#: Later runs (hours after the launch) that send messages deferred by quiet hours.
LATER_PASSES_H = (8, 16)


def run_demo(*, directory: Path, customers: int, seed: int, now: datetime, console: Console,
             rules_dir: Path, templates_dir: Path) -> None:
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
    rules = load_rules(settings.rules_dir)
    ruleset = RuleSet.from_folder(settings.rules_dir)
    for r in launch(settings, engine, rules, now=now, simulated=True, ruleset=ruleset):
        console.print(f"{r.rule:>16}: planned {r.planned:>4}, held out {r.held_out:>3} (control group), "
                      f"sent now {r.queued:>4}")
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
    replayed = replay_responses(settings, engine, now=now, seed=seed)
    console.print(", ".join(f"{v} {k}" for k, v in replayed.items()))

    console.rule("[bold]4. ROI report")
    for part in render_tables(build_document(engine, settings, now=now, splits=[])):
        console.print(part)
    console.print(
        f"[dim]demo data and outbox in {directory}/ — finished in "
        f"{time.perf_counter() - started:.1f} s. Responses above are simulated.[/]"
    )


def default_demo_time() -> datetime:
    """Today at 02:00 UTC — 10:00 in Shanghai, where most demo customers live."""
    return utcnow().replace(hour=2, minute=0, second=0, microsecond=0)

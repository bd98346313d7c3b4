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

import email
import email.policy
import hashlib
import hmac
import json
import random
import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from outreach.config import Settings, load_settings
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Channel, Customer, Message, MessageStatus, TrackingEvent

#: Probabilities of the simulated responses (clearly not real data).
P_OPEN, P_CLICK, P_UNSUB, P_STOP = 0.42, 0.35, 0.012, 0.02
#: Chance that a customer orders inside the window: treated vs control group.
P_ORDER_TREATED, P_ORDER_CLICKED, P_ORDER_CONTROL = 0.09, 0.30, 0.05
DEMO_TWILIO_TOKEN = "demo-twilio-auth-token"
#: Later runs (hours after the launch) that send messages deferred by quiet hours.
LATER_PASSES_H = (8, 16)
_LINK = re.compile(r'href="([^"]+/c/[^"]+)"')
_PIXEL = re.compile(r'src="([^"]+/o/[^"]+)"')


def run_demo(*, directory: Path, customers: int, seed: int, now: datetime, console: Console) -> None:
    from outreach.importing.run import import_csv
    from outreach.planning.launch import launch
    from outreach.rules import RuleSet
    from outreach.reporting.roi import build_report, render_table
    from outreach.rules import load_rules

    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    from outreach.webhooks.server import free_port

    settings = load_settings(
        public_url=f"http://127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{directory / 'outreach.db'}",
        broker_url="memory://",
        outbox_dir=directory / "outbox",
        email_transport="outbox",
        sms_transport="outbox",
        twilio_auth_token=DEMO_TWILIO_TOKEN,
    )
    engine = make_engine(settings.database_url)
    migrate(engine)

    from outreach.demo.data import generate

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
    counts = replay_responses(settings, engine, now=now, seed=seed)
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()))

    console.rule("[bold]4. ROI report")
    console.print(render_table(build_report(engine)))
    console.print(
        f"[dim]demo data and outbox in {directory}/ — finished in "
        f"{time.perf_counter() - started:.1f} s. Responses above are simulated.[/]"
    )


def default_demo_time() -> datetime:
    """Today at 02:00 UTC — 10:00 in Shanghai, where most demo customers live."""
    from outreach.clock import utcnow

    return utcnow().replace(hour=2, minute=0, second=0, microsecond=0)


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    import base64

    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def replay_responses(settings: Settings, engine: Engine, *, now: datetime, seed: int) -> dict[str, int]:
    """Drive the webhook server (real HTTP on loopback) with simulated behaviour."""
    import httpx

    from outreach.webhooks.app import create_app
    from outreach.webhooks.server import serve_in_thread

    rng = random.Random(seed * 31)
    clock = {"now": now}
    app = create_app(settings, engine, clock=lambda: clock["now"])
    counts = {"opens": 0, "clicks": 0, "unsubscribes": 0, "STOP replies": 0, "orders": 0}
    with Session(engine) as session:
        messages = session.execute(
            select(Message, Customer.external_id)
            .join(Customer, Customer.id == Message.customer_id)
            .where(Message.status.in_([MessageStatus.SENT, MessageStatus.HELD_OUT]))
            .order_by(Message.id)
        ).all()
        windows = _windows(session)
    secret = settings.require_order_secret()
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base, timeout=30) as client:
        for msg, customer_ext in messages:
            clicked = False
            base = msg.sent_at or msg.planned_at
            clock["now"] = base + timedelta(minutes=rng.randint(5, 600))
            if msg.status is MessageStatus.SENT and msg.channel is Channel.EMAIL:
                eml = email.message_from_bytes(
                    (Path(settings.outbox_dir) / "email" / f"{msg.id}.eml").read_bytes(),
                    policy=email.policy.default,
                )
                html = eml.get_body(("html",)).get_content()  # type: ignore[union-attr]
                if rng.random() < P_OPEN:
                    client.get(_PIXEL.search(html).group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
                    counts["opens"] += 1
                    if rng.random() < P_CLICK and (link := _LINK.search(html)):
                        client.get(link.group(1).replace("&amp;", "&"), follow_redirects=False)
                        counts["clicks"] += 1
                        clicked = True
                if rng.random() < P_UNSUB:
                    url = str(eml["List-Unsubscribe"]).strip("<>")
                    client.post(url, content=b"List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
                    counts["unsubscribes"] += 1
            elif msg.status is MessageStatus.SENT and rng.random() < P_STOP:
                url = f"{settings.public_url}/webhooks/twilio/inbound"
                params = {"MessageSid": f"SMdemo{msg.id:026d}", "AccountSid": "ACdemo",
                          "From": msg.to_address or "", "To": "+10000000000", "Body": "STOP"}
                client.post(url, data=params,
                            headers={"X-Twilio-Signature": _twilio_signature(DEMO_TWILIO_TOKEN, url, params)})
                counts["STOP replies"] += 1
            p = P_ORDER_CONTROL if msg.status is MessageStatus.HELD_OUT else (
                P_ORDER_CLICKED if clicked else P_ORDER_TREATED)
            if rng.random() < p:
                window = windows.get(msg.rule_id, 7)
                order = _order(rng, msg.id, customer_ext, base + timedelta(hours=rng.randint(2, window * 24 - 2)))
                body = json.dumps(order).encode()
                response = client.post(f"{settings.public_url}/webhooks/orders", content=body,
                                       headers={"X-Outreach-Signature": _sign(secret, body),
                                                "Content-Type": "application/json"})
                response.raise_for_status()
                counts["orders"] += 1
    with Session(engine) as session, session.begin():
        session.execute(update(TrackingEvent).values(simulated=True))
    return counts


def _windows(session: Session) -> dict[int, int]:
    from outreach.store.models import Rule

    return {r.id: int(r.definition.get("attribution_window_days", 7)) for r in session.scalars(select(Rule))}


def _order(rng: random.Random, message_id: int, customer_ext: str, when: datetime) -> dict[str, Any]:
    from outreach.demo.data import PRODUCTS

    sku, category, price = rng.choice(PRODUCTS)
    qty = rng.randint(1, 3)
    return {
        "external_id": f"SIM-{message_id}",
        "customer_id": customer_ext,
        "ordered_at": when.isoformat() + "Z",
        "amount": f"{price * qty:.2f}",
        "currency": "CNY",
        "items": [{"sku": sku, "category": category, "quantity": qty, "amount": f"{price * qty:.2f}"}],
    }

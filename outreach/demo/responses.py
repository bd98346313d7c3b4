"""Simulated customer responses for the demo — clearly labelled as such.

Replayed over real HTTP through the same webhook app ``outreach serve``
runs, using the links and headers in the delivered messages: opens, clicks,
one-click unsubscribes, STOP replies and orders (more often for treated
customers than for the control group, so the report has a lift to show).
"""

from __future__ import annotations

import email
import email.policy
import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.demo.data import PRODUCTS
from outreach.domain import Channel, MessageStatus
from outreach.store.models import Customer, Message, Rule, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import serve_in_thread
from outreach.webhooks.twilio import twilio_signature

#: Probabilities of the simulated responses (clearly not real data).
P_OPEN, P_CLICK, P_UNSUB, P_STOP = 0.42, 0.35, 0.012, 0.02
#: Chance that a customer orders inside the window: treated vs control group.
P_ORDER_TREATED, P_ORDER_CLICKED, P_ORDER_CONTROL = 0.09, 0.30, 0.05
#: The Twilio auth token the demo's settings and its simulated replies share.
DEMO_TWILIO_TOKEN = "demo-twilio-auth-token"
_LINK = re.compile(r'href="([^"]+/c/[^"]+)"')
_PIXEL = re.compile(r'src="([^"]+/o/[^"]+)"')


def replay_responses(settings: Settings, engine: Engine, *, now: datetime, seed: int) -> dict[str, int]:
    """Drive the webhook server (real HTTP on loopback) with simulated behaviour."""
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
            sent = msg.sent_at or msg.planned_at
            clock["now"] = sent + timedelta(minutes=rng.randint(5, 600))
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
                            headers={"X-Twilio-Signature": twilio_signature(DEMO_TWILIO_TOKEN, url, params)})
                counts["STOP replies"] += 1
            p = P_ORDER_CONTROL if msg.status is MessageStatus.HELD_OUT else (
                P_ORDER_CLICKED if clicked else P_ORDER_TREATED)
            if rng.random() < p:
                window = windows.get(msg.rule_id, 7)
                placed = sent + timedelta(hours=rng.randint(2, window * 24 - 2))
                order = _order(rng, msg.id, customer_ext, placed)
                clock["now"] = placed  # the shop reports the order when it is placed
                body = json.dumps(order).encode()
                response = client.post(f"{settings.public_url}/webhooks/orders", content=body,
                                       headers=signed_headers(secret, body, at=placed))
                response.raise_for_status()
                counts["orders"] += 1
    with Session(engine) as session, session.begin():
        session.execute(update(TrackingEvent).values(simulated=True))
    return counts


def _windows(session: Session) -> dict[int, int]:
    return {r.id: int(r.definition.get("attribution_window_days", 7)) for r in session.scalars(select(Rule))}


def _order(rng: random.Random, message_id: int, customer_ext: str, when: datetime) -> dict[str, Any]:
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

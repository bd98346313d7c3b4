"""Simulated customer responses for the demo — clearly labelled as such.

Replayed over real HTTP through the same webhook app ``outreach serve``
runs, using the links and headers in the delivered messages: opens, clicks,
one-click unsubscribes, STOP replies and orders.

Orders carry a **known, injected lift** per rule (:data:`INJECTED`): each
measured message — sent, or held out in the control group — is followed by
one order with probability ``p_treated`` or ``p_control``, placed uniformly
inside that message's own attribution window (``sent_at`` or ``planned_at``
→ ``attribute_until``, the window the report counts it in). Clickers order
:data:`ORDER_CLICK_FACTOR` times as often and the other recipients of an
email correspondingly less, so the expected rate over a rule's sent messages
is exactly ``p_treated``. A customer in several rules can have another rule's
order inside this window too; :func:`expected_lift_pp` works out what that
does to the expected lift (the demo prints it: a fraction of a point).

The orders are marked ``source = 'simulated'`` and every tracking event
``simulated``, so nobody mistakes them for data.
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
from outreach.store.models import Customer, Message, Order, Rule, TrackingEvent
from outreach.webhooks.app import create_app
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import serve_in_thread
from outreach.webhooks.twilio import twilio_signature

#: Probabilities of the simulated responses (clearly not real data).
P_OPEN, P_CLICK, P_UNSUB, P_STOP = 0.42, 0.35, 0.012, 0.02
#: The injected effect per rule: (p_control, p_treated), the chance that a
#: held-out / a sent message is followed by an order inside its window.
#: Simulated, not data: a clear gain, none, and a loss, so the report shows every verdict.
INJECTED: dict[str, tuple[float, float]] = {
    "winback": (0.04, 0.12),          # +8 pp: the 15 % offer brings lapsed buyers back
    "birthday": (0.06, 0.06),         # 0 pp: a greeting without an offer sells nothing extra
    "upsell-teaware": (0.10, 0.06),   # −4 pp: the teapot pitch puts some tea buyers off
    "vip-lapsing": (0.05, 0.15),      # +10 pp
    "cart-abandoned": (0.10, 0.18),   # +8 pp
}
#: Rules of your own (the demo runs the working folder's rules when it has some).
DEFAULT_INJECTED = (0.05, 0.08)
#: Recipients who click order this many times as often as the message's rate
#: (the others less, so the average is the rate); below 1 / P(click).
ORDER_CLICK_FACTOR = 3.0
#: The order the simulated shop reports is labelled with this ``orders.source``.
SIMULATED_SOURCE = "simulated"
#: External ids of simulated orders start with this.
SIMULATED_PREFIX = "SIM-"
#: The Twilio auth token the demo's settings and its simulated replies share.
DEMO_TWILIO_TOKEN = "demo-twilio-auth-token"
_LINK = re.compile(r'href="([^"]+/c/[^"]+)"')
_PIXEL = re.compile(r'src="([^"]+/o/[^"]+)"')


def replay_responses(settings: Settings, engine: Engine, *, now: datetime, seed: int,
                     injected: dict[str, tuple[float, float]] | None = None) -> dict[str, int]:
    """Drive the webhook server (real HTTP on loopback) with simulated
    behaviour; orders by ``injected`` (rule → (p_control, p_treated);
    :data:`INJECTED` and :data:`DEFAULT_INJECTED` when not given)."""
    rng = random.Random(seed * 31)
    clock = {"now": now}
    app = create_app(settings, engine, clock=lambda: clock["now"])
    counts = {"opens": 0, "clicks": 0, "unsubscribes": 0, "STOP replies": 0, "orders": 0}
    messages = _measured(engine)
    secret = settings.require_order_secret()
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base, timeout=30) as client:
        for msg, customer_ext, rule in messages:
            clicked, clickable = False, False
            sent = msg.sent_at or msg.planned_at
            clock["now"] = sent + timedelta(minutes=rng.randint(5, 600))
            if msg.status is MessageStatus.SENT and msg.channel is Channel.EMAIL:
                eml = email.message_from_bytes(
                    (Path(settings.outbox_dir) / "email" / f"{msg.id}.eml").read_bytes(),
                    policy=email.policy.default,
                )
                html = eml.get_body(("html",)).get_content()  # type: ignore[union-attr]
                link = _LINK.search(html)
                clickable = link is not None
                if rng.random() < P_OPEN:
                    client.get(_PIXEL.search(html).group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
                    counts["opens"] += 1
                    if rng.random() < P_CLICK and link:
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
            p_control, p_treated = _injected(injected, rule)
            held = msg.status is MessageStatus.HELD_OUT
            chance = p_control if held else order_chance(p_treated, P_OPEN * P_CLICK if clickable else 0.0,
                                                         clicked=clicked)
            if rng.random() < chance:
                start, until = _window_of(msg)
                placed = start + timedelta(seconds=rng.randint(1, int((until - start).total_seconds())))
                order = _order(rng, msg.id, customer_ext, placed)
                clock["now"] = placed  # the shop reports the order when it is placed
                body = json.dumps(order).encode()
                response = client.post(f"{settings.public_url}/webhooks/orders", content=body,
                                       headers=signed_headers(secret, body, at=placed))
                response.raise_for_status()
                counts["orders"] += 1
    with Session(engine) as session, session.begin():
        session.execute(update(TrackingEvent).values(simulated=True))
        session.execute(update(Order).where(Order.external_id.startswith(SIMULATED_PREFIX))
                        .values(source=SIMULATED_SOURCE))
    return counts


def order_chance(rate: float, click_chance: float, *, clicked: bool) -> float:
    """The chance of an order after a sent message, given whether it was
    clicked, such that the average over its recipients is ``rate``: clickers
    :data:`ORDER_CLICK_FACTOR` × ``rate`` (at most 1), the others what is left."""
    after_click = min(1.0, rate * ORDER_CLICK_FACTOR)
    if clicked:
        return after_click
    return max(0.0, (rate - click_chance * after_click) / (1 - click_chance))


def expected_lift_pp(engine: Engine, injected: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Per rule with both arms, the lift in points the simulation's orders are
    expected to show in the report: the injected one, moved by the orders that
    *other* messages of the same customers place inside this message's window
    (each placed uniformly in its own). For a message m of a customer with
    messages k: P(an order in m's window) = 1 − ∏ₖ (1 − pₖ · |Wₖ ∩ Wₘ| / |Wₖ|)."""
    by_customer: dict[int, list[tuple[str, bool, datetime, datetime, float]]] = {}
    for msg, _, rule in _measured(engine):
        p_control, p_treated = _injected(injected, rule)
        held = msg.status is MessageStatus.HELD_OUT
        by_customer.setdefault(msg.customer_id, []).append(
            (rule, held, *_window_of(msg), p_control if held else p_treated))
    arms: dict[tuple[str, bool], list[float]] = {}
    for own in by_customer.values():
        for rule, held, start, until, _ in own:
            miss = 1.0
            for _, _, k_start, k_until, k_p in own:
                overlap = (min(until, k_until) - max(start, k_start)).total_seconds()
                miss *= 1 - k_p * max(0.0, overlap) / (k_until - k_start).total_seconds()
            arms.setdefault((rule, held), []).append(1 - miss)
    return {rule: (sum(treated) / len(treated) - sum(control) / len(control)) * 100
            for (rule, held), treated in arms.items() if not held
            and (control := arms.get((rule, True)))}


def _injected(injected: dict[str, tuple[float, float]] | None, rule: str) -> tuple[float, float]:
    return (injected or INJECTED).get(rule, DEFAULT_INJECTED)


def _window_of(msg: Message) -> tuple[datetime, datetime]:
    """Where the report counts an order for this message: from the send (the
    planned send for the control group) to the end of its attribution window."""
    start = msg.planned_at if msg.status is MessageStatus.HELD_OUT else msg.sent_at
    assert start is not None and msg.attribute_until is not None  # measured messages have both
    return start, msg.attribute_until


def _measured(engine: Engine) -> list[tuple[Message, str, str]]:
    """The sent and held-out messages with their customer's external id and rule."""
    with Session(engine, expire_on_commit=False) as session:
        return [(msg, ext, rule) for msg, ext, rule in session.execute(
            select(Message, Customer.external_id, Rule.name)
            .join(Customer, Customer.id == Message.customer_id)
            .join(Rule, Rule.id == Message.rule_id)
            .where(Message.status.in_([MessageStatus.SENT, MessageStatus.HELD_OUT]))
            .order_by(Message.id)
        )]


def _order(rng: random.Random, message_id: int, customer_ext: str, when: datetime) -> dict[str, Any]:
    sku, category, price = rng.choice(PRODUCTS)
    qty = rng.randint(1, 3)
    return {
        "external_id": f"{SIMULATED_PREFIX}{message_id}",
        "customer_id": customer_ext,
        "ordered_at": when.isoformat() + "Z",
        "amount": f"{price * qty:.2f}",
        "currency": "CNY",
        "items": [{"sku": sku, "category": category, "quantity": qty, "amount": f"{price * qty:.2f}"}],
    }

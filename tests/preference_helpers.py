"""What the preference-center tests share: a clock they can move, the
webhook server over real HTTP, and a browser's way of sending a form."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import NOW, add_customer, add_order, loaded_rule
from outreach.config import Settings
from outreach.domain import MessageStatus
from outreach.planning.launch import plan_rule
from outreach.rules import LoadedRule
from outreach.sending import tokens
from outreach.sending.deliver import Sender
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message
from outreach.webhooks.app import create_app
from outreach.webhooks.server import free_port, serve_in_thread
from policy_factories import make_settings

#: When the customer uses their page (the tests plan before and after it).
ARRIVAL = NOW + timedelta(hours=2)


class Clock:
    """The webhook server's clock, moved by the test (never the wall clock)."""

    def __init__(self, now: datetime = ARRIVAL) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rule(name: str, *, topic: str | None = None, transactional: bool = False,
         channels: str = "[email, sms]") -> LoadedRule:
    """An inactivity rule (no order for 30 days) of a topic, or transactional."""
    lines = [f"name: {name}", "trigger: {type: inactivity, days: 30}", "template: winback",
             f"channels: {channels}", "cooldown_days: 0"]
    if topic:
        lines.append(f"topic: {topic}")
    if transactional:
        lines.append("transactional: true")
    return loaded_rule("\n".join(lines) + "\n", f"{name}.yaml")


def settings_for(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url, public_url=f"http://127.0.0.1:{free_port()}")


def lapsed_customer(engine: Engine, ext: str = "ada", *, locale: str = "en", name: str = "Ada Lovelace",
                    consent: dict[str, str] | None = None) -> int:
    """A customer with email (and SMS) consent who last ordered 40 days before NOW."""
    with transaction(engine) as s:
        customer = add_customer(s, ext, name=name, locale=locale, tz="Asia/Shanghai" if locale == "zh_CN" else "UTC",
                                consent=consent or {"email": "granted", "sms": "granted"})
        add_order(s, customer, NOW - timedelta(days=40), 80)
        return customer.id


def plan(engine: Engine, loaded: LoadedRule, at: datetime) -> list[int]:
    """Plan a rule as of ``at``; the ids of the messages it queued."""
    _, queued = plan_rule(engine, loaded, now=at)
    return [message_id for message_id, _ in queued]


def deliver(settings: Settings, engine: Engine, ids: list[int], at: datetime) -> dict[int, tuple[MessageStatus, str]]:
    """A worker sends them (send time ``at``); each message's status and reason."""
    Sender(settings, engine, worker_id="w1").deliver(ids, as_of=at)
    with Session(engine) as s:
        return {m.id: (m.status, m.last_error or "") for m in s.scalars(select(Message).where(Message.id.in_(ids)))}


def planned_for(engine: Engine, ids: list[int]) -> dict[str, str]:
    """external id → channel of the planned messages."""
    with Session(engine) as s:
        return {ext: channel.value for ext, channel in s.execute(
            select(Customer.external_id, Message.channel).join(Customer, Customer.id == Message.customer_id)
            .where(Message.id.in_(ids)))}


def page_path(settings: Settings, message_id: int) -> str:
    return tokens.preferences_url(settings, message_id).removeprefix(settings.public_url)


@contextmanager
def webhooks(engine: Engine, settings: Settings, clock: Clock) -> Iterator[httpx.Client]:
    app = create_app(settings, engine, clock=clock)
    port = int(settings.public_url.rsplit(":", 1)[1])
    with serve_in_thread(app, port=port) as base, httpx.Client(base_url=base, timeout=60) as http:
        yield http


class _Form(HTMLParser):
    """The fields a browser sends for the page's first form (as the page set them)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms += 1
        if tag != "input" or self.forms != 1:
            return
        if a.get("type") == "hidden" or (a.get("type") in ("checkbox", "radio") and "checked" in a):
            self.fields[a["name"]] = a.get("value", "on")


def form_of(html: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(html)
    return parser.fields

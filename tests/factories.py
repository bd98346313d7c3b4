"""Small builders for test data, written straight to the models.

Every helper takes an open ``Session`` and flushes, so ids are available at
once; the caller's ``transaction(engine)`` commits. Times are naive UTC, like
everything the engine stores.

    with transaction(engine) as s:
        ada = add_customer(s, "ada", consent={"email": "granted"})
        add_order(s, ada, NOW - timedelta(days=40), 120, items=[("LJ-100", "tea")])
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus, CustomerType, MessageStatus
from outreach.planning.launch import LaunchResult, plan_rule
from outreach.rules import LoadedRule, parse_rule
from outreach.store.engine import transaction
from outreach.store.models import (
    ConsentRecord,
    Customer,
    CustomerTag,
    CustomEvent,
    Message,
    Order,
    OrderItem,
    Suppression,
)

#: The moment most tests plan at (naive UTC).
NOW = datetime(2026, 6, 1, 9, 0)
#: When customers sign up (and give consent) unless a test says otherwise.
SIGNUP = datetime(2024, 1, 1)
#: Marker for "make one up from the external id" (``None`` means "no address").
AUTO: Any = object()

_order_numbers = itertools.count(1)
_phone_numbers = itertools.count(1)


# ------------------------------------------------------------------ customers
def add_customer(
    session: Session,
    ext: str,
    *,
    name: str = "Ada Lovelace",
    email: str | None = AUTO,
    phone: str | None = AUTO,
    tz: str = "UTC",
    birthday: date | None = None,
    locale: str = "en",
    customer_type: str | CustomerType = CustomerType.RETAIL,
    tags: Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    consent: Mapping[str, str] | None = None,
    at: datetime | None = None,
    created_at: datetime = SIGNUP,
) -> Customer:
    """A customer; ``email``/``phone`` default to addresses made from ``ext``
    (pass ``None`` for none). ``consent`` maps channel → status, recorded
    ``at`` (default: at signup); the default grants email only."""
    customer = Customer(
        external_id=ext,
        name=name,
        email=f"{ext}@example.com" if email is AUTO else email,
        phone=f"+86138{next(_phone_numbers):08d}" if phone is AUTO else phone,
        timezone=tz,
        locale=locale,
        customer_type=CustomerType(customer_type),
        birthday=birthday,
        birth_month=birthday.month if birthday else None,
        birth_day=birthday.day if birthday else None,
        attributes=dict(attributes or {}),
        created_at=created_at,
        updated_at=created_at,
    )
    session.add(customer)
    session.flush()
    for tag in tags:
        session.add(CustomerTag(customer_id=customer.id, tag=tag))
    consent = {"email": "granted"} if consent is None else consent
    for channel, status in consent.items():
        add_consent(session, customer, channel, status, at=at or created_at)
    session.flush()
    return customer


def add_consent(
    session: Session, customer: Customer, channel: str, status: str, *, at: datetime
) -> ConsentRecord:
    """Append one entry to the consent ledger."""
    record = ConsentRecord(
        customer_id=customer.id,
        channel=Channel(channel),
        status=ConsentStatus(status),
        source="test",
        recorded_at=at,
    )
    session.add(record)
    session.flush()
    return record


def add_suppression(
    session: Session, channel: str, address: str, *, reason: str = "bounce", at: datetime = NOW
) -> Suppression:
    row = Suppression(channel=Channel(channel), address=address, reason=reason, created_at=at)
    session.add(row)
    session.flush()
    return row


def bulk_customers(
    session: Session,
    count: int,
    *,
    prefix: str = "c",
    birthday: date | None = None,
    consent: str | None = "email",
) -> list[int]:
    """``count`` customers in two bulk INSERTs (customers, then consents
    granted on ``consent`` at signup); returns their ids in insertion order."""
    stamp = SIGNUP
    rows = [
        {
            "external_id": f"{prefix}{n:06d}",
            "name": f"Customer {n}",
            "email": f"{prefix}{n:06d}@example.com",
            "timezone": "UTC",
            "locale": "en",
            "customer_type": CustomerType.RETAIL,
            "attributes": {},
            "birthday": birthday,
            "birth_month": birthday.month if birthday else None,
            "birth_day": birthday.day if birthday else None,
            "created_at": stamp,
            "updated_at": stamp,
        }
        for n in range(count)
    ]
    ids = list(
        session.scalars(insert(Customer).returning(Customer.id, sort_by_parameter_order=True), rows)
    )
    if consent:
        session.execute(
            insert(ConsentRecord),
            [
                {
                    "customer_id": cid,
                    "channel": Channel(consent),
                    "status": ConsentStatus.GRANTED,
                    "source": "test",
                    "recorded_at": stamp,
                }
                for cid in ids
            ],
        )
    return ids


# ------------------------------------------------------------------ orders
def add_order(
    session: Session,
    customer: Customer,
    at: datetime,
    amount: float | int | str | Decimal = 100,
    items: Sequence[tuple[str, str | None]] = (("SKU-1", "misc"),),
    *,
    ext: str | None = None,
) -> Order:
    """An order at ``at`` with one line per ``(sku, category)``."""
    order = Order(
        external_id=ext or f"{customer.external_id}-o{next(_order_numbers)}",
        customer_id=customer.id,
        ordered_at=at,
        amount=Decimal(str(amount)),
    )
    order.items = [OrderItem(sku=sku, category=category) for sku, category in items]
    session.add(order)
    session.flush()
    return order


def add_event(
    session: Session, customer: Customer, name: str, at: datetime, **properties: Any
) -> CustomEvent:
    """A custom event (``cart_abandoned`` …) with JSON properties."""
    event = CustomEvent(customer_id=customer.id, name=name, occurred_at=at, properties=properties)
    session.add(event)
    session.flush()
    return event


# ------------------------------------------------------------------ rules
def loaded_rule(text: str, file: str = "x.yaml") -> LoadedRule:
    """Parse rule YAML the way ``load_rule`` does, without a file on disk."""
    return LoadedRule(parse_rule(text, file=file), Path(file), text)


@dataclass(frozen=True)
class Planned:
    """One message of a run, as a marketer would describe it."""

    channel: Channel
    status: MessageStatus
    to_address: str | None
    occurrence_key: str
    cost: Decimal
    attribute_until: datetime | None


def plan(engine: Engine, rule: str | LoadedRule, now: datetime) -> tuple[LaunchResult, dict[str, Planned]]:
    """Plan ``rule`` as of ``now``; return the launch result and this run's
    messages keyed by the customer's external id."""
    loaded = loaded_rule(rule) if isinstance(rule, str) else rule
    result, _ids = plan_rule(engine, loaded, now=now)
    return result, run_messages(engine, result.run_id)


def run_messages(engine: Engine, run_id: int) -> dict[str, Planned]:
    with transaction(engine) as s:
        rows = s.execute(
            select(Customer.external_id, Message)
            .join(Customer, Customer.id == Message.customer_id)
            .where(Message.run_id == run_id)
        ).all()
        return {
            ext: Planned(m.channel, m.status, m.to_address, m.occurrence_key, m.cost, m.attribute_until)
            for ext, m in rows
        }



__all__ = [
    "AUTO",
    "NOW",
    "SIGNUP",
    "Planned",
    "add_consent",
    "add_customer",
    "add_event",
    "add_order",
    "add_suppression",
    "bulk_customers",
    "loaded_rule",
    "plan",
    "run_messages",
]


def old_database(path: Path, revision: str, *, now: datetime) -> Engine:
    """A SQLite database migrated only up to ``revision`` and holding one
    customer (id 1, 'C1'), written with plain SQL as that schema had it —
    to test what an upgrade of an existing installation does."""
    from alembic import command
    from sqlalchemy import text

    from outreach.store.engine import alembic_config, make_engine

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO customers (id, external_id, name, timezone, locale, customer_type, attributes, "
            "created_at, updated_at) VALUES (1, 'C1', 'Ada', 'UTC', 'en', 'retail', '{}', :t, :t)"
        ), {"t": now})
    return engine

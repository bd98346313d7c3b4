"""Record responses: the only code that writes tracking events and the consent
changes responses cause. Every function is idempotent and leaves the
transaction to its caller (the webhook pipeline: verify → parse → store → act).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, delete, false, insert, select
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.domain import Channel, ConsentStatus, EventType
from outreach.errors import PayloadError
from outreach.store import coupons, dialect, permission, redemptions
from outreach.store.models import ConsentRecord, Customer, CustomEvent, Message, Order, OrderItem, TrackingEvent

#: The tables the hot paths write with Core statements (no ORM bookkeeping per row).
CUSTOMERS, ORDERS = cast(Table, Customer.__table__), cast(Table, Order.__table__)
ITEMS, EVENTS = cast(Table, OrderItem.__table__), cast(Table, TrackingEvent.__table__)


def record_event(
    session: Session, *, type: EventType, occurred_at: datetime, source: str,
    message_id: int | None = None, customer_id: int | None = None, order_id: int | None = None,
    url: str | None = None, dedupe_key: str | None = None, payload: dict[str, Any] | None = None,
    simulated: bool = False,
) -> int | None:
    """Store one normalized event; None when ``dedupe_key`` was already stored."""
    if customer_id is None and message_id is not None:
        customer_id = session.scalar(select(Message.customer_id).where(Message.id == message_id))
    stmt = dialect.insert(session, EVENTS).values(
        type=type, occurred_at=occurred_at, source=source, message_id=message_id,
        customer_id=customer_id, order_id=order_id, url=url, dedupe_key=dedupe_key,
        payload=payload or {}, simulated=simulated,
    )
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = session.execute(stmt.returning(EVENTS.c.id))
    return result.scalar()


@dataclass(frozen=True, kw_only=True)
class LinkEvent:
    """An open or a click of a message's link (its token already verified)."""

    type: EventType
    message_id: int
    occurred_at: datetime
    source: str
    url: str | None = None
    payload: dict[str, Any] | None = None


_events = TrackingEvent.__table__.c
#: One statement per event, the customer read from the message in the same
#: statement (a message that does not exist stores nothing): no round trip before it.
_LINK_EVENT = insert(TrackingEvent).from_select(
    ["type", "occurred_at", "source", "url", "payload", "simulated", "message_id", "customer_id"],
    select(bindparam("type", type_=_events.type.type), bindparam("occurred_at", type_=_events.occurred_at.type),
           bindparam("source", type_=_events.source.type), bindparam("url", type_=_events.url.type),
           bindparam("payload", type_=_events.payload.type), false(), Message.id, Message.customer_id)
    .where(Message.id == bindparam("message_id")))


def record_link_events(engine: Engine, events: Sequence[LinkEvent]) -> None:
    """Store ``events`` (opens, clicks) in one transaction."""
    with engine.begin() as conn:
        conn.execute(_LINK_EVENT, [{"type": e.type, "occurred_at": e.occurred_at, "source": e.source,
                                    "url": e.url, "payload": e.payload or {}, "message_id": e.message_id}
                                   for e in events])


def _set_consent(session: Session, *, customer_id: int, channel: Channel, status: ConsentStatus,
                 occurred_at: datetime, source: str, evidence: str) -> None:
    """Append ``status`` to the consent ledger unless it is already the latest."""
    latest = session.scalar(
        select(ConsentRecord.status)
        .where(ConsentRecord.customer_id == customer_id, ConsentRecord.channel == channel)
        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )
    if latest is not status:
        session.add(ConsentRecord(customer_id=customer_id, channel=channel, status=status,
                                  source=source, evidence=evidence, recorded_at=occurred_at))


#: The suppression an unsubscribe adds (the link, an ESP's report, the preference page).
UNSUBSCRIBED = "unsubscribed"


def unsubscribe(session: Session, *, message_id: int, occurred_at: datetime, source: str,
                simulated: bool = False) -> bool:
    """Revoke consent on the message's channel, suppress its address, record
    the event. False when this message's unsubscribe was already recorded."""
    message = session.get(Message, message_id)
    if message is None:
        raise PayloadError.single("unknown message", field="token")
    event = record_event(session, type=EventType.UNSUBSCRIBE, occurred_at=occurred_at, source=source,
                         message_id=message_id, customer_id=message.customer_id,
                         dedupe_key=f"unsub:{message_id}", simulated=simulated)
    _set_consent(session, customer_id=message.customer_id, channel=message.channel, status=ConsentStatus.REVOKED,
                 occurred_at=occurred_at, source=source, evidence=f"one-click unsubscribe from message {message_id}")
    if message.to_address:
        permission.suppress(session, channel=message.channel, address=message.to_address,
                       reason=UNSUBSCRIBED, now=occurred_at)
    return event is not None


#: The suppression a STOP reply adds.
STOP_REASON = "STOP reply"
#: Suppressions the customer's own opt-out added, which their own new evidence
#: (a START reply, a confirmed double opt-in) lifts — never a bounce or a complaint.
OPT_OUT_REASONS = (STOP_REASON, UNSUBSCRIBED)


def _sms_keyword(session: Session, *, phone: str, event: EventType, status: ConsentStatus,
                 occurred_at: datetime, source: str, payload: dict[str, Any], dedupe_key: str | None,
                 simulated: bool, reply: str | None) -> int:
    """One event and one consent change per customer with this number, the
    reply kept as evidence. Returns how many customers it concerned."""
    customers = list(session.scalars(select(Customer.id).where(Customer.phone == phone)))
    for index, customer_id in enumerate(customers):
        record_event(session, type=event, occurred_at=occurred_at, source=source,
                     customer_id=customer_id, payload=payload, simulated=simulated,
                     dedupe_key=f"{dedupe_key}:{index}" if dedupe_key else None)
        _set_consent(session, customer_id=customer_id, channel=Channel.SMS, status=status,
                     occurred_at=occurred_at, source=source,
                     evidence=f"SMS reply '{payload.get('Body', '') if reply is None else reply}' from {phone}")
    return len(customers)


def stop_sms(session: Session, *, phone: str, occurred_at: datetime, source: str,
             payload: dict[str, Any], dedupe_key: str | None, simulated: bool = False, reply: str | None = None) -> int:
    """A STOP reply (``reply``: its words; default Twilio's ``Body``): revoke
    SMS consent of every customer with this number and suppress it. Returns
    how many customers it affected."""
    count = _sms_keyword(session, phone=phone, event=EventType.STOP, status=ConsentStatus.REVOKED,
                         occurred_at=occurred_at, source=source, payload=payload, dedupe_key=dedupe_key,
                         simulated=simulated, reply=reply)
    permission.suppress(session, channel=Channel.SMS, address=phone, reason=STOP_REASON, now=occurred_at)
    return count


def start_sms(session: Session, *, phone: str, occurred_at: datetime, source: str,
              payload: dict[str, Any], dedupe_key: str | None, reply: str | None = None) -> int:
    """A START (UNSTOP, YES) reply: the customers with this number consent to
    SMS again — the reply is the evidence — and the number's opt-out
    suppression (a STOP, or SMS turned off on the preference page) is lifted
    (a bounce or complaint stays). Returns how many customers."""
    count = _sms_keyword(session, phone=phone, event=EventType.REPLY, status=ConsentStatus.GRANTED,
                         occurred_at=occurred_at, source=source, payload=payload, dedupe_key=dedupe_key,
                         simulated=False, reply=reply)
    permission.lift(session, channel=Channel.SMS, address=phone, reasons=OPT_OUT_REASONS)
    return count


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    """A provider's word on whether an SMS reached the handset."""

    type: EventType  # DELIVERED, FAILED (or UNKNOWN)
    provider_id: str | None  # the provider's id of the message (BizId, SerialNo)
    message_id: int | None  # ours, when the provider echoes it back (Aliyun's out_id)
    dedupe_key: str  # a retried push is stored once
    payload: dict[str, Any]


def record_delivery_reports(session: Session, reports: Sequence[DeliveryReport], *, source: str,
                            occurred_at: datetime) -> int:
    """Store each report as a normalized event of its message (found by our
    id, else by the provider's, in one query each); how many were new. A
    report of a message we do not know is kept without one."""
    echoed = {r.message_id for r in reports if r.message_id is not None}
    ours = set(session.scalars(select(Message.id).where(Message.id.in_(echoed)))) if echoed else set()
    provided = {r.provider_id for r in reports if r.provider_id}
    theirs: dict[str | None, int] = {provider_id: message_id for provider_id, message_id in session.execute(
        select(Message.provider_id, Message.id).where(Message.provider_id.in_(provided)))} if provided else {}
    new = 0
    for report in reports:
        message_id = report.message_id if report.message_id in ours else theirs.get(report.provider_id)
        stored = record_event(session, type=report.type, occurred_at=occurred_at, source=source,
                              message_id=message_id, dedupe_key=report.dedupe_key, payload=report.payload)
        new += stored is not None
    return new


@dataclass(frozen=True, kw_only=True)
class OrderLine:
    sku: str
    category: str | None = None
    quantity: int = 1
    amount: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class IncomingOrder:
    """An order as a source reported it (checked by that source's parser)."""

    external_id: str
    customer_external_id: str
    ordered_at: datetime  # naive UTC
    amount: Decimal
    currency: str
    coupon_code: str | None = None
    items: tuple[OrderLine, ...] = ()
    #: What the order says its coupon took off (in its currency), if it says.
    discount: Decimal | None = None


def record_order(session: Session, order: IncomingOrder, *, source: str, payload: dict[str, Any],
                 simulated: bool = False, reported_at: datetime | None = None) -> tuple[int, bool]:
    """Upsert an order by external id (items replaced) and record an ORDER event
    once, keeping the source's ``payload`` beside it. With ``reported_at``
    (the signed time of a webhook delivery), a version reported no later
    than the stored one changes nothing. Returns the order's id and whether
    this version was stored (no reload of the row: one round trip less)."""
    # One customer's orders are written one at a time (PostgreSQL: the row
    # lock below; SQLite has one writer): the per-customer tables the
    # database's triggers keep would otherwise race (two recomputes of the
    # same customer's products). NO KEY: the orders' foreign-key checks go on.
    customer_id = session.scalar(select(CUSTOMERS.c.id).where(CUSTOMERS.c.external_id == order.customer_external_id)
                                 .with_for_update(key_share=True))  # FOR NO KEY UPDATE
    if customer_id is None:
        raise PayloadError.single(f"unknown customer '{order.customer_external_id}'", field="customer_id",
                                  hint="send the customer's external_id, as imported")
    # One atomic upsert: a second delivery of the same order at the same
    # moment waits for this one's row lock, then replaces — never a second
    # row, never a second set of items. (Core statements on the tables: the
    # ORM's bulk machinery would double the Python time of an order.)
    values = {"customer_id": customer_id, "ordered_at": order.ordered_at, "amount": order.amount,
              "currency": order.currency.upper(), "reported_at": reported_at, "discount": order.discount,
              "coupon_code": coupons.normalize_code(order.coupon_code) if order.coupon_code else None}
    stmt = dialect.insert(session, ORDERS).values(external_id=order.external_id, source=source, **values)
    newer = ORDERS.c.reported_at.is_(None) | (ORDERS.c.reported_at < stmt.excluded.reported_at)
    stored = session.execute(
        stmt.on_conflict_do_update(index_elements=["external_id"], set_=values,
                                   where=newer if reported_at is not None else None)
        .returning(ORDERS.c.id)).scalar()
    if stored is None:  # an older (or the same) delivery: the stored version stays
        return session.execute(select(ORDERS.c.id).where(ORDERS.c.external_id == order.external_id)).scalar_one(), False
    order_id = stored
    session.execute(delete(ITEMS).where(ITEMS.c.order_id == order_id))
    if order.items:
        session.execute(insert(ITEMS), [
            {"order_id": order_id, "sku": item.sku, "category": item.category, "quantity": item.quantity,
             "amount": item.amount} for item in order.items])
    record_event(session, type=EventType.ORDER, occurred_at=order.ordered_at, source=source,
                 customer_id=customer_id, order_id=order_id, dedupe_key=f"order:{order.external_id}",
                 payload=payload, simulated=simulated)
    # The code it carries: a redemption of that code's message (or, changed, no longer).
    redemptions.record_for_orders(session.connection(), [order_id], now=reported_at or utcnow())
    return order_id, True


@dataclass(frozen=True, kw_only=True)
class IncomingEvent:
    """A custom event as a source reported it (checked by that source's parser)."""

    external_id: str
    customer_external_id: str
    name: str
    occurred_at: datetime  # naive UTC
    properties: dict[str, Any]


def record_custom_events(session: Session, events: list[IncomingEvent]) -> list[int]:
    """Upsert custom events by their external id — a delivery retried, or a
    version sent again, is stored once — and return their ids, in order.
    An unknown customer is a PayloadError naming the event, and nothing is stored."""
    wanted = {e.customer_external_id for e in events}
    customers: dict[str, int] = {ext: cid for ext, cid in session.execute(
        select(Customer.external_id, Customer.id).where(Customer.external_id.in_(wanted)))}
    for index, event in enumerate(events):
        if event.customer_external_id not in customers:
            raise PayloadError.single(f"unknown customer '{event.customer_external_id}'",
                                      field=f"{index}.customer_id" if len(events) > 1 else "customer_id",
                                      hint="send the customer's external_id, as imported")
    ids = []
    for event in events:
        values = {"customer_id": customers[event.customer_external_id], "name": event.name,
                  "occurred_at": event.occurred_at, "properties": event.properties}
        stmt = dialect.insert(session, CustomEvent).values(external_id=event.external_id, **values)
        ids.append(session.execute(stmt.on_conflict_do_update(index_elements=["external_id"], set_=values)
                                   .returning(CustomEvent.id)).scalar_one())
    return ids

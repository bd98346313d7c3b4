"""The right of access: everything Outreach holds about one customer, as one
JSON-ready document (``outreach customers export``).

The shape is stable and versioned by ``SCHEMA_VERSION`` (docs/privacy.md
describes every key); a key is only ever added within a version. Times are
naive UTC in ISO 8601, amounts are strings (exact decimals).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.errors import InputError
from outreach.store.coupons import customer_codes
from outreach.store.models import (
    ConsentConfirmation,
    ConsentRecord,
    CurrentConsent,
    Customer,
    CustomerStats,
    CustomEvent,
    MarketingPause,
    Membership,
    Message,
    Order,
    PreferenceRecord,
    Rule,
    Suppression,
    TopicOptOut,
    TrackingEvent,
)

#: Bumped when a key changes meaning or goes away (adding keys does not).
SCHEMA_VERSION = 1
CUSTOMER_HINT = ("give the customer's external_id as imported (the external_id column of customers.csv); "
                 "an erased customer has none any more")
STATS_FIELDS = ("as_of", "order_count", "revenue", "first_order_at", "last_order_at", "orders_12m", "revenue_12m",
                "r_score", "f_score", "m_score", "rfm_segment", "value_tier", "lifecycle_stage", "clv")


def find_customer(session: Session, external_id: str) -> Customer:
    """The customer with this external id, or an InputError that says how to name one."""
    customer = session.scalars(select(Customer).where(Customer.external_id == external_id)).one_or_none()
    if customer is None:
        raise InputError.single(f"no customer with external id '{external_id}'", field="ID", hint=CUSTOMER_HINT)
    return customer


def _row(obj: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def export_customer(session: Session, external_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about the customer (see docs/privacy.md for the shape)."""
    customer = find_customer(session, external_id)
    cid = customer.id
    rules = {rule_id: name for rule_id, name in session.execute(select(Rule.id, Rule.name))}
    messages = session.scalars(select(Message).where(Message.customer_id == cid).order_by(Message.id)).all()
    addresses = {a for a in (customer.email, customer.phone, *(m.to_address for m in messages)) if a}
    orders = session.scalars(select(Order).where(Order.customer_id == cid).order_by(Order.ordered_at, Order.id)).all()
    order_ids = {o.id: o.external_id for o in orders}
    message_ids = [m.id for m in messages]
    tracking = session.scalars(
        select(TrackingEvent).where((TrackingEvent.customer_id == cid) | TrackingEvent.message_id.in_(message_ids))
        .order_by(TrackingEvent.occurred_at, TrackingEvent.id)).all()
    stats = session.get(CustomerStats, cid)
    return {
        "schema_version": SCHEMA_VERSION,
        "exported_at": now,
        "customer": {
            **_row(customer, "external_id", "name", "email", "phone", "birthday", "timezone", "locale",
                   "customer_type", "attributes", "created_at", "updated_at"),
            "tags": sorted(t.tag for t in customer.tags),
        },
        "consents": {
            "ledger": [_row(r, "channel", "status", "source", "evidence", "recorded_at") for r in session.scalars(
                select(ConsentRecord).where(ConsentRecord.customer_id == cid)
                .order_by(ConsentRecord.recorded_at, ConsentRecord.id))],
            "current": [_row(c, "channel", "status", "recorded_at") for c in session.scalars(
                select(CurrentConsent).where(CurrentConsent.customer_id == cid).order_by(CurrentConsent.channel))],
        },
        "preferences": _preferences(session, cid),
        "suppressions": [_row(s, "channel", "address", "reason", "created_at") for s in session.scalars(
            select(Suppression).where(Suppression.address.in_(addresses)).order_by(Suppression.id))],
        "orders": [{
            **_row(o, "external_id", "ordered_at", "amount", "currency", "coupon_code", "source"),
            "items": [_row(i, "sku", "category", "quantity", "amount") for i in o.items],
        } for o in orders],
        "events": [_row(e, "external_id", "name", "occurred_at", "properties") for e in session.scalars(
            select(CustomEvent).where(CustomEvent.customer_id == cid).order_by(CustomEvent.occurred_at))],
        "messages": [{
            "id": m.id, "rule": rules.get(m.rule_id),
            **_row(m, "channel", "status", "to_address", "subject", "planned_at", "queued_at", "sent_at",
                   "finished_at", "last_error", "variant"),
        } for m in messages],
        "tracking_events": [{
            **_row(t, "type", "occurred_at", "source", "message_id", "url", "simulated", "payload"),
            "order": order_ids.get(t.order_id) if t.order_id is not None else None,
        } for t in tracking],
        "stats": _row(stats, *STATS_FIELDS) if stats else None,
        "coupons": customer_codes(session, cid),
        "holdouts": [{"rule": rules.get(m.rule_id), "planned_at": m.planned_at}
                     for m in messages if m.status is MessageStatus.HELD_OUT],
        "memberships": [_row(m, "key", "entered_at", "left_at", "baseline") for m in session.scalars(
            select(Membership).where(Membership.customer_id == cid).order_by(Membership.entered_at))],
    }


def _preferences(session: Session, cid: int) -> dict[str, Any]:
    """The customer's choices on their preference page, with their evidence."""
    pause = session.get(MarketingPause, cid)
    return {
        "topics_off": [_row(t, "topic", "opted_out_at") for t in session.scalars(
            select(TopicOptOut).where(TopicOptOut.customer_id == cid).order_by(TopicOptOut.topic))],
        "pause": _row(pause, "paused_at", "paused_until") if pause else None,
        "ledger": [_row(r, "kind", "name", "value", "source", "evidence", "recorded_at") for r in session.scalars(
            select(PreferenceRecord).where(PreferenceRecord.customer_id == cid)
            .order_by(PreferenceRecord.recorded_at, PreferenceRecord.id))],
        "confirmations": [_row(c, "channel", "address", "requested_at", "expires_at", "confirmed_at")
                          for c in session.scalars(select(ConsentConfirmation)
                                                   .where(ConsentConfirmation.customer_id == cid)
                                                   .order_by(ConsentConfirmation.id))],
    }

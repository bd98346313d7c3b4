"""Builders for the ROI report's tests: rules as synced, messages of any
status and variant, orders in any currency, codes given and redeemed."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from factories import NOW
from outreach.domain import Channel, MessageStatus
from outreach.store import redemptions
from outreach.store.models import Coupon, CouponPool, Customer, Message, Order, Rule

_keys = itertools.count(1)
_orders = itertools.count(1)


def add_rule(session: Session, name: str, **definition: Any) -> Rule:
    """A rule row as ``sync_rule`` writes it; ``definition``: holdout_percent, margin, fixed_cost, variants…"""
    spec = {"name": name, "channels": ["email"], "holdout_percent": 10, **definition}
    rule = Rule(name=name, path=f"rules/{name}.yaml", definition=spec, checksum="x", updated_at=NOW)
    session.add(rule)
    session.flush()
    return rule


def add_message(session: Session, rule: Rule, customer: Customer, *, status: MessageStatus = MessageStatus.SENT,
                at: datetime = NOW, window_days: int = 7, cost: str = "0.05", variant: str | None = None,
                channel: Channel = Channel.EMAIL) -> Message:
    sent = status is MessageStatus.SENT
    m = Message(rule_id=rule.id, customer_id=customer.id, channel=channel, occurrence_key=f"k{next(_keys)}",
                status=status, to_address=customer.email, planned_at=at, attempts=1 if sent else 0,
                sent_at=at if sent else None, attribute_until=at + timedelta(days=window_days),
                cost=Decimal(cost) if sent else Decimal(0), variant=variant)
    session.add(m)
    session.flush()
    return m


def add_order(session: Session, customer: Customer, at: datetime, amount: str | int | Decimal, *,
              currency: str = "CNY", source: str = "import", coupon: str | None = None,
              discount: str | None = None) -> Order:
    order = Order(external_id=f"o{next(_orders)}", customer_id=customer.id, ordered_at=at,
                  amount=Decimal(str(amount)), currency=currency, source=source, coupon_code=coupon,
                  discount=None if discount is None else Decimal(discount))
    session.add(order)
    session.flush()
    return order


def give_code(session: Session, message: Message, code: str, *, percent_off: str = "10") -> Coupon:
    pool = session.query(CouponPool).filter_by(name="pool").one_or_none()
    if pool is None:
        pool = CouponPool(name="pool", created_at=NOW)
        session.add(pool)
        session.flush()
    coupon = Coupon(pool_id=pool.id, code=code, source="generated", added_at=NOW, message_id=message.id,
                    given_at=message.sent_at or message.planned_at, percent_off=Decimal(percent_off))
    session.add(coupon)
    session.flush()
    return coupon


def record_redemptions(session: Session, orders: list[Order]) -> None:
    redemptions.record_for_orders(session.connection(), [o.id for o in orders], now=NOW)

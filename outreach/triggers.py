"""Triggers as set-based SQL.

Each trigger compiles to one ``SELECT customer_id, occurrence_key`` over the
whole customer base. The *occurrence key* names the reason a customer is
eligible; ``messages`` is unique on (rule, customer, occurrence_key), so the
same reason can never produce a second message:

=============  =============================================  ====================
trigger        eligible when (as of ``now``)                  occurrence key
=============  =============================================  ====================
inactivity     last order ≤ now − N days                      inactivity:N:<last order time>
upsell         bought X in (now − window, now], never bought Y upsell:<latest qualifying order id>
birthday       local date in the customer's time zone + days   birthday:<local year>
               before = birthday (29 Feb → 28 Feb in common
               years)
=============  =============================================  ====================
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Select,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from outreach.models import Customer, Order, OrderItem
from outreach.rules import schema
from outreach.segments import product_match


def local_date(now: datetime, tz_name: str) -> date:
    """The calendar date at naive-UTC ``now`` in time zone ``tz_name``."""
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return now.replace(tzinfo=UTC).astimezone(zone).date()


def birthday_matches(birthday: date, day: date) -> bool:
    """Python statement of the birthday rule (used by ``explain``)."""
    if (birthday.month, birthday.day) == (day.month, day.day):
        return True
    return (
        (birthday.month, birthday.day) == (2, 29)
        and (day.month, day.day) == (2, 28)
        and not calendar.isleap(day.year)
    )


def inactivity(trigger: schema.InactivityTrigger, now: datetime) -> Select:
    last = func.max(Order.ordered_at)
    return (
        select(
            Order.customer_id.label("customer_id"),
            (literal(f"inactivity:{trigger.days}:") + cast(last, String)).label("occurrence_key"),
        )
        .where(Order.ordered_at <= now)
        .group_by(Order.customer_id)
        .having(last <= now - timedelta(days=trigger.days))
    )


def upsell(trigger: schema.UpsellTrigger, now: datetime) -> Select:
    window = trigger.bought.within_days or schema.DEFAULT_UPSELL_WINDOW_DAYS
    later, later_item = aliased(Order), aliased(OrderItem)
    return (
        select(
            Order.customer_id.label("customer_id"),
            (literal("upsell:") + cast(func.max(Order.id), String)).label("occurrence_key"),
        )
        .join(OrderItem, OrderItem.order_id == Order.id)
        .where(
            Order.ordered_at <= now,
            Order.ordered_at > now - timedelta(days=window),
            product_match(trigger.bought),
            ~exists().where(
                later.customer_id == Order.customer_id,
                later_item.order_id == later.id,
                later.ordered_at <= now,
                product_match(trigger.never_bought, later_item),
            ),
        )
        .group_by(Order.customer_id)
    )


def birthday(trigger: schema.BirthdayTrigger, now: datetime, timezones: list[str]) -> Select:
    """At any instant there are at most three local dates on Earth; group the
    customers' time zones by local date and match birthdays per group."""
    by_day: dict[date, list[str]] = defaultdict(list)
    for tz in timezones:
        by_day[local_date(now, tz) + timedelta(days=trigger.days_before)].append(tz)
    selects = []
    for day, tzs in sorted(by_day.items()):
        same_day = and_(Customer.birth_month == day.month, Customer.birth_day == day.day)
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            same_day = or_(same_day, and_(Customer.birth_month == 2, Customer.birth_day == 29))
        selects.append(
            select(
                Customer.id.label("customer_id"),
                literal(f"birthday:{day.year}").label("occurrence_key"),
            ).where(Customer.timezone.in_(tzs), same_day)
        )
    if not selects:
        return select(Customer.id.label("customer_id"), literal("").label("occurrence_key")).where(
            literal(False)
        )
    if len(selects) == 1:
        return selects[0]
    return select(union_all(*selects).subquery())


def trigger_select(spec: schema.RuleSpec, now: datetime, *, timezones: list[str]) -> Select:
    trig = spec.trigger
    if isinstance(trig, schema.InactivityTrigger):
        return inactivity(trig, now)
    if isinstance(trig, schema.UpsellTrigger):
        return upsell(trig, now)
    if isinstance(trig, schema.BirthdayTrigger):
        return birthday(trig, now, timezones)
    raise TypeError(f"unknown trigger {trig!r}")  # pragma: no cover

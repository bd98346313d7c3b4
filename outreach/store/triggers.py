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
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    join,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from outreach.clock import known_zone, zone_or_utc
from outreach.rules.spec import RuleSpec
from outreach.rules.triggers import (
    DEFAULT_UPSELL_WINDOW_DAYS,
    AnniversaryTrigger,
    BirthdayTrigger,
    EventTrigger,
    InactivityTrigger,
    LifecycleTrigger,
    SegmentEntryTrigger,
    UpsellTrigger,
)
from outreach.store import totals
from outreach.store.dialect import local_time
from outreach.store.models import Customer, CustomEvent, Membership, Order, OrderItem
from outreach.store.segments import compare, ever_bought, json_operand, product_match


def local_date(now: datetime, tz_name: str) -> date:
    """The calendar date at naive-UTC ``now`` in time zone ``tz_name``."""
    return now.replace(tzinfo=UTC).astimezone(zone_or_utc(tz_name)).date()


def birthday_matches(birthday: date, day: date) -> bool:
    """Python statement of the birthday rule (used by ``explain``)."""
    if (birthday.month, birthday.day) == (day.month, day.day):
        return True
    return (
        (birthday.month, birthday.day) == (2, 29)
        and (day.month, day.day) == (2, 28)
        and not calendar.isleap(day.year)
    )


def inactivity(trigger: InactivityTrigger, now: datetime) -> Select[*tuple[Any, ...]]:
    """One SELECT per step; a customer matches only the highest step reached."""
    if trigger.event:
        lasts = (
            select(CustomEvent.customer_id.label("customer_id"),
                   func.max(CustomEvent.occurred_at).label("last_at"))
            .where(CustomEvent.occurred_at <= now, CustomEvent.name == trigger.event)
            .group_by(CustomEvent.customer_id)
            .subquery("last_events")
        )
        who, last = lasts.c.customer_id, lasts.c.last_at
    else:
        # The maintained order totals: no aggregation over every order.
        lasts = totals.as_of(now).subquery("last_orders")
        who, last = lasts.c.customer_id, lasts.c.last_order_at
    steps = trigger.steps
    selects = []
    for index, step in enumerate(steps):
        reached = [last <= now - timedelta(days=step)]
        if index + 1 < len(steps):
            reached.append(last > now - timedelta(days=steps[index + 1]))
        selects.append(
            select(
                who.label("customer_id"),
                (literal(f"inactivity:{step}:") + cast(last, String)).label("occurrence_key"),
            ).where(*reached)
        )
    return selects[0] if len(selects) == 1 else select(union_all(*selects).subquery())


def upsell(trigger: UpsellTrigger, now: datetime) -> Select[*tuple[Any, ...]]:
    """Qualifying orders (matching items in the window, optionally with a minimum
    quantity/spend), by customers who never bought the excluded products."""
    window = trigger.bought.within_days or DEFAULT_UPSELL_WINDOW_DAYS
    qualifying = (
        select(Order.id.label("order_id"), Order.customer_id.label("customer_id"))
        .join(OrderItem, OrderItem.order_id == Order.id)
        .where(
            Order.ordered_at <= now,
            Order.ordered_at > now - timedelta(days=window),
            product_match(trigger.bought),
            ~ever_bought(trigger.never_bought, now, Order.customer_id),
        )
        .group_by(Order.id, Order.customer_id)
    )
    minimums = []
    if trigger.bought.min_quantity is not None:
        minimums.append(func.sum(OrderItem.quantity) >= trigger.bought.min_quantity)
    if trigger.bought.min_amount is not None:
        minimums.append(func.coalesce(func.sum(OrderItem.amount), 0) >= trigger.bought.min_amount)
    if minimums:
        qualifying = qualifying.having(and_(*minimums))
    q = qualifying.subquery("qualifying")
    return select(
        q.c.customer_id,
        (literal("upsell:") + cast(func.max(q.c.order_id), String)).label("occurrence_key"),
    ).group_by(q.c.customer_id)


def _days_by_local_date(now: datetime, timezones: list[str], days_before: int) -> dict[date, list[str]]:
    """At any instant there are at most three local dates on Earth: group the
    customers' time zones by the (shifted) local date."""
    by_day: dict[date, list[str]] = defaultdict(list)
    for tz in timezones:
        by_day[local_date(now, tz) + timedelta(days=days_before)].append(tz)
    return by_day


def _yearly(
    *, month: Any, day: Any, who: Any, tz: Any, prefix: str, now: datetime, timezones: list[str],
    days_before: int, source: Any = None, extra: Any = None,
) -> Select[*tuple[Any, ...]]:
    selects = []
    for target, tzs in sorted(_days_by_local_date(now, timezones, days_before).items()):
        same_day = and_(month == target.month, day == target.day)
        if (target.month, target.day) == (2, 28) and not calendar.isleap(target.year):
            same_day = or_(same_day, and_(month == 2, day == 29))
        query = select(who.label("customer_id"), literal(f"{prefix}:{target.year}").label("occurrence_key"))
        if source is not None:
            query = query.select_from(source)
        query = query.where(tz.in_(tzs), same_day)
        if extra is not None:
            query = query.where(extra(target))
        selects.append(query)
    if not selects:
        return select(Customer.id.label("customer_id"), literal("").label("occurrence_key")).where(literal(False))
    return selects[0] if len(selects) == 1 else select(union_all(*selects).subquery())


def birthday(trigger: BirthdayTrigger, now: datetime, timezones: list[str]) -> Select[*tuple[Any, ...]]:
    return _yearly(
        month=Customer.birth_month, day=Customer.birth_day, who=Customer.id, tz=Customer.timezone,
        prefix="birthday", now=now, timezones=timezones, days_before=trigger.days_before,
    )


def _customer_zone(timezones: list[str]) -> Any:
    """The customer's time zone as an expression the database accepts: a
    name Python does not know reads as UTC (as it does everywhere else)."""
    unknown = [tz for tz in timezones if known_zone(tz) is None]
    if not unknown:
        return Customer.timezone
    return case((Customer.timezone.in_(unknown), literal("UTC")), else_=Customer.timezone)


def anniversary(trigger: AnniversaryTrigger, now: datetime, timezones: list[str]) -> Select[*tuple[Any, ...]]:
    """Yearly return of signup or first order: the calendar date of that moment
    in the customer's time zone; the first year counts, the day itself does not."""
    moment: Any
    if trigger.of == "signup":
        moment, source = Customer.created_at, None
    else:
        first = totals.first_orders(now).subquery("first_orders")
        moment = first.c.first_order_at
        source = join(Customer, first, first.c.customer_id == Customer.id)
    anchor = local_time(moment, _customer_zone(timezones))
    return _yearly(
        month=extract("month", anchor), day=extract("day", anchor), who=Customer.id,
        tz=Customer.timezone, prefix=f"anniversary:{trigger.of}", now=now, timezones=timezones,
        days_before=trigger.days_before, source=source,
        extra=lambda target: extract("year", anchor) < target.year,
    )


#: The occurrence key of an event rule's message: this, then the event's id.
EVENT_OCCURRENCE = "event:"


def event(trigger: EventTrigger, now: datetime) -> Select[*tuple[Any, ...]]:
    """Events old enough (delay) and young enough (max age), not followed by a
    cancelling event or order."""
    later = aliased(CustomEvent)
    conditions = [
        CustomEvent.name == trigger.name,
        CustomEvent.occurred_at <= now - timedelta(minutes=trigger.delay_minutes),
        CustomEvent.occurred_at > now - timedelta(hours=trigger.max_age_hours),
    ]
    for key, comparison in trigger.where.items():
        value, ops = json_operand(CustomEvent.properties[key], comparison.operators())
        conditions.append(compare(value, ops))
    cancel_events = [name for name in trigger.cancel_on if name != "order"]
    if cancel_events:
        conditions.append(
            ~exists().where(
                later.customer_id == CustomEvent.customer_id,
                later.name.in_(cancel_events),
                later.occurred_at > CustomEvent.occurred_at,
                later.occurred_at <= now,
            )
        )
    if "order" in trigger.cancel_on:
        conditions.append(
            ~exists().where(
                Order.customer_id == CustomEvent.customer_id,
                Order.ordered_at > CustomEvent.occurred_at,
                Order.ordered_at <= now,
            )
        )
    # One occurrence per customer and run — the latest qualifying event — so two
    # abandoned carts do not become two messages at once (past the cap and cooldown,
    # which are checked against earlier messages only).
    ranked = select(
        CustomEvent.customer_id.label("customer_id"),
        CustomEvent.id.label("event_id"),
        func.row_number()
        .over(partition_by=CustomEvent.customer_id,
              order_by=(CustomEvent.occurred_at.desc(), CustomEvent.id.desc()))
        .label("rank"),
    ).where(*conditions).subquery("qualifying_events")
    return select(
        ranked.c.customer_id,
        (literal(EVENT_OCCURRENCE) + cast(ranked.c.event_id, String)).label("occurrence_key"),
    ).where(ranked.c.rank == 1)


def entries(key: str, max_age_days: int, now: datetime) -> Select[*tuple[Any, ...]]:
    """Recent entries into a tracked set (not the first evaluation's baseline)."""
    return select(
        Membership.customer_id.label("customer_id"),
        (literal("entry:") + cast(Membership.id, String)).label("occurrence_key"),
    ).where(
        Membership.key == key,
        Membership.left_at.is_(None),
        Membership.baseline.is_(False),
        Membership.entered_at <= now,
        Membership.entered_at > now - timedelta(days=max_age_days),
    )


TriggerCompiler = Callable[[Any, RuleSpec, datetime, list[str]], Select[*tuple[Any, ...]]]
#: Each trigger model of ``outreach.rules.triggers`` → its SQL, given
#: (trigger, rule, now, the customers' time zones).
COMPILERS: dict[type[BaseModel], TriggerCompiler] = {
    InactivityTrigger: lambda trig, spec, now, zones: inactivity(trig, now),
    UpsellTrigger: lambda trig, spec, now, zones: upsell(trig, now),
    BirthdayTrigger: lambda trig, spec, now, zones: birthday(trig, now, zones),
    AnniversaryTrigger: lambda trig, spec, now, zones: anniversary(trig, now, zones),
    EventTrigger: lambda trig, spec, now, zones: event(trig, now),
    LifecycleTrigger: lambda trig, spec, now, zones: entries(spec.membership_key or "", trig.max_age_days, now),
    SegmentEntryTrigger: lambda trig, spec, now, zones: entries(spec.membership_key or "", trig.max_age_days, now),
}


def trigger_select(spec: RuleSpec, now: datetime, *, timezones: list[str]) -> Select[*tuple[Any, ...]]:
    """(customer_id, occurrence_key) of everyone the rule's trigger selects as of ``now``."""
    compiler = COMPILERS.get(type(spec.trigger))
    if compiler is None:
        raise TypeError(f"no SQL for trigger {type(spec.trigger).__name__}: add it to COMPILERS in {__name__}")
    return compiler(spec.trigger, spec, now, timezones)

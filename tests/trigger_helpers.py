"""Helpers the trigger, stats, segment, policy, inspection and schedule tests
share (on top of ``factories`` and ``policy_factories``): who a run messages,
a rule for every buyer of a segment, and the morning shop of the policy tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from factories import add_customer, add_order, plan
from outreach.rules import RuleSet
from outreach.rules.policy import Policy
from outreach.store.models import Customer, Message, Rule
from policy_factories import plan_run, rule

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# ------------------------------------------------------------------ who a run messages
def bare_recipients(engine: Engine, text: str, now: datetime) -> set[str]:
    """Customers this run planned a message for (``factories.plan``: no rule
    set, so no policy — no send windows, no cap, no named segments)."""
    return set(plan(engine, text, now)[1])


def recipients(engine: Engine, text: str, now: datetime, rs: RuleSet | None = None) -> set[str]:
    """Customers this run planned a message for, under ``rs`` (default: the
    documented policy; ``policy_factories.plan_run``)."""
    return set(plan_run(engine, rule(text), now, rs)[1])


#: A rule for every buyer (last order a day old or more) in ``segment``.
EVERY_BUYER = """
name: {name}
trigger: {{type: inactivity, days: 1}}
segment: {segment}
template: winback
channels: [email]
"""


# ------------------------------------------------------------------ one policy, as a marketer sees it
#: 02:00 UTC: 10:00 in Shanghai, 21:00 (the day before) in New York.
MORNING = datetime(2026, 6, 1, 2, 0)
#: At most one message per customer a week; SMS only 09:00–20:00 local.
RULESET = RuleSet(policy=Policy.model_validate({
    "frequency_cap": {"max_messages": 1, "days": 7},
    "send_windows": {"sms": {"start": "09:00", "end": "20:00"}},
}))


def rule_text(name: str, *, priority: int, channels: str = "[email]", holdout: int = 0) -> str:
    """An inactivity rule (30 days) as YAML text."""
    return (f"name: {name}\ntrigger: {{type: inactivity, days: 30}}\ntemplate: winback\n"
            f"channels: {channels}\npriority: {priority}\nholdout_percent: {holdout}\ncooldown_days: 0\n")


def messages(engine: Engine) -> list[tuple[str, str, str, str]]:
    """Every outbox row as (rule, customer's external id, channel, status),
    by customer, then rule."""
    with Session(engine) as s:
        rows = s.execute(select(Rule.name, Customer.external_id, Message.channel, Message.status)
                         .join(Rule, Rule.id == Message.rule_id)
                         .join(Customer, Customer.id == Message.customer_id)
                         .order_by(Customer.external_id, Rule.name)).all()
    return [(r, c, ch.value, st.value) for r, c, ch, st in rows]


def lapsed_by_morning(session: Session, ext: str, **kwargs: Any) -> Customer:
    """A customer whose last order was 40 days before MORNING."""
    customer = add_customer(session, ext, **kwargs)
    add_order(session, customer, MORNING - timedelta(days=40))
    return customer


__all__ = [
    "DAY",
    "EVERY_BUYER",
    "HOUR",
    "MORNING",
    "RULESET",
    "bare_recipients",
    "lapsed_by_morning",
    "messages",
    "recipients",
    "rule_text",
]

"""Builders for the policy, trigger and inspection tests (on top of ``factories``).

    rs = ruleset({"frequency_cap": {"max_messages": 1}}, {"vip": {"stats": {"value_tier": "vip"}}})
    result, rows = plan_run(engine, rule(TEXT), NOW, rs)
    assert rows["ada"].channel is Channel.EMAIL and rows["ada"].status is MessageStatus.QUEUED
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import loaded_rule
from outreach.config import Settings, load_settings
from outreach.domain import Channel, MessageStatus
from outreach.planning.launch import LaunchResult, plan_rule
from outreach.rules import LoadedRule, RuleSet
from outreach.rules.policy import Policy
from outreach.rules.spec import SegmentsFile
from outreach.store import outbox
from outreach.store.models import CampaignRun, Customer, CustomerStats, Membership, Message, Order, OrderItem, Rule

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ rules
def rule(text: str, file: str = "x.yaml") -> LoadedRule:
    """A rule parsed from YAML text (``LoadedRule(spec, Path(file), text)``)."""
    return loaded_rule(text, file)


def ruleset(
    policy: Mapping[str, Any] | None = None, segments: Mapping[str, Any] | None = None
) -> RuleSet:
    """A RuleSet as ``rules/policy.yaml`` and ``rules/segments.yaml`` would give
    it: the documented policy defaults (SMS 09:00–21:00, no cap) unless ``policy``
    says otherwise; ``segments`` as plain YAML-like dicts."""
    parsed = SegmentsFile.model_validate({"segments": dict(segments or {})})
    return RuleSet(policy=Policy.model_validate(dict(policy or {})), segments=dict(parsed.segments))


# ------------------------------------------------------------------ data
def add_order_lines(
    session: Session,
    customer: Customer,
    at: datetime,
    lines: Sequence[tuple[str, str | None, int, str | int | None]],
    *,
    ext: str | None = None,
) -> Order:
    """An order with lines ``(sku, category, quantity, line amount)``; the order
    amount is the sum of the line amounts."""
    total = sum((Decimal(str(amount)) for *_rest, amount in lines if amount is not None), Decimal("0"))
    order = Order(
        external_id=ext or f"{customer.external_id}-{at:%Y%m%d%H%M%S}-{len(lines)}-{total}",
        customer_id=customer.id,
        ordered_at=at,
        amount=total,
    )
    order.items = [
        OrderItem(sku=sku, category=category, quantity=quantity,
                  amount=None if amount is None else Decimal(str(amount)))
        for sku, category, quantity, amount in lines
    ]
    session.add(order)
    session.flush()
    return order


def add_message(
    session: Session,
    loaded: LoadedRule,
    customer: Customer,
    *,
    channel: str,
    status: str,
    planned_at: datetime,
    key: str | None = None,
) -> Message:
    """An outbox row of ``loaded``'s rule written as if an earlier run had made it."""
    rule_row = outbox.sync_rule(session, loaded, planned_at)
    message = Message(
        rule_id=rule_row.id,
        customer_id=customer.id,
        channel=Channel(channel),
        occurrence_key=key or f"earlier:{planned_at:%Y%m%d%H%M}",
        status=MessageStatus(status),
        to_address=customer.email if channel == "email" else customer.phone,
        planned_at=planned_at,
        cost=Decimal("0"),
        attempts=0,
    )
    session.add(message)
    session.flush()
    return message


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class Row:
    """One outbox row, as a marketer would describe it."""

    rule: str
    channel: Channel
    status: MessageStatus
    not_before: datetime | None
    occurrence_key: str
    to_address: str | None


def _rows(engine: Engine, *where: Any) -> list[tuple[str, Row]]:
    with Session(engine) as s:
        return [
            (ext, Row(name, m.channel, m.status, m.not_before, m.occurrence_key, m.to_address))
            for ext, name, m in s.execute(
                select(Customer.external_id, Rule.name, Message)
                .join(Customer, Customer.id == Message.customer_id)
                .join(Rule, Rule.id == Message.rule_id)
                .where(*where)
                .order_by(Message.id)
            ).all()
        ]


def run_rows(engine: Engine, run_id: int) -> dict[str, Row]:
    """This run's messages by the customer's external id."""
    return dict(_rows(engine, Message.run_id == run_id))


def rows_by_customer(engine: Engine, rule_name: str | None = None) -> dict[str, list[Row]]:
    """Every message (of one rule, or of all) by the customer's external id."""
    out: dict[str, list[Row]] = {}
    for ext, row in _rows(engine, *([Rule.name == rule_name] if rule_name else [])):
        out.setdefault(ext, []).append(row)
    return out


def plan_run(
    engine: Engine, loaded: LoadedRule, now: datetime, rs: RuleSet | None = None
) -> tuple[LaunchResult, dict[str, Row]]:
    """``plan_rule`` as of ``now`` with ``rs`` (default: documented policy);
    the result and this run's rows by external id."""
    result, _ids = plan_rule(engine, loaded, now=now, ruleset=rs or ruleset())
    return result, run_rows(engine, result.run_id)


def customer_id(engine: Engine, ext: str) -> int:
    with Session(engine) as s:
        cid = s.scalar(select(Customer.id).where(Customer.external_id == ext))
        assert cid is not None, ext
        return cid


def table_counts(engine: Engine) -> dict[str, int]:
    """Row counts of every table preview/explain must leave alone."""
    with Session(engine) as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Message, Membership, CustomerStats, CampaignRun, Rule)
        }


def stats_of(engine: Engine) -> dict[str, CustomerStats]:
    """customer_stats rows by external id (detached, read-only)."""
    with Session(engine, expire_on_commit=False) as s:
        rows = s.execute(
            select(Customer.external_id, CustomerStats).join(
                CustomerStats, CustomerStats.customer_id == Customer.id
            )
        ).all()
        s.expunge_all()
        return {ext: st for ext, st in rows}


# ------------------------------------------------------------------ sending
def make_settings(tmp_path: Path, db_url: str, **extra: Any) -> Settings:
    """Embedded settings: in-process broker, file outbox under ``tmp_path``,
    the repository's templates."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "broker_url": "memory://",
        "outbox_dir": tmp_path / "outbox",
        "templates_dir": REPO / "templates",
        "rules_dir": REPO / "rules",
        "secret_key": "test-secret",
    }
    values.update(extra)
    return load_settings(**values)


def outbox_recipients(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Addresses in the file outbox: (email To: headers, SMS numbers)."""
    import email
    import email.policy

    emails = [
        str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"])
        for p in sorted((tmp_path / "outbox" / "email").glob("*.eml"))
    ]
    sms_file = tmp_path / "outbox" / "sms.jsonl"
    sms = (
        [json.loads(line)["to"] for line in sms_file.read_text().splitlines() if line.strip()]
        if sms_file.exists()
        else []
    )
    return emails, sms


__all__ = [
    "REPO",
    "Row",
    "add_message",
    "add_order_lines",
    "customer_id",
    "make_settings",
    "outbox_recipients",
    "plan_run",
    "rows_by_customer",
    "rule",
    "ruleset",
    "run_rows",
    "stats_of",
    "table_counts",
]

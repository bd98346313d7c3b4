"""Builders for the offer tests: a template that shows the code, a rule with
an offer, lapsed customers, and what the outbox and the database say.

    settings = offer_shop(engine, db_url, tmp_path, customers=5, codes=3)
    launch(settings, engine, [offer_rule()], now=NOW, simulated=True)
    assert len(codes_by_message(engine)) == 3
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from factories import bulk_customers, loaded_rule
from outreach.config import Settings
from outreach.domain import MessageStatus
from outreach.rules import LoadedRule
from outreach.store import coupons
from outreach.store.engine import transaction
from outreach.store.models import Coupon, Message, Order
from policy_factories import make_settings

#: The moment offers are sent at (customers last ordered 40 days before).
NOW = datetime(2026, 6, 1, 9, 0)
#: The template of the offer tests: the code in the text, in a link, in an SMS.
OFFER_TEMPLATES = Path(__file__).parent / "fixtures" / "offer_templates"
#: What a code in a delivered message looks like (generated with the tests' prefix).
CODE_IN_TEXT = re.compile(r"\bSP15-[2-9A-HJKMNP-TV-Z]{10}\b")


def offer_templates(root: Path, name: str = "spring") -> Path:
    """A templates folder (under ``root``) whose template ``name`` shows the
    code in the email's text, in a link's query, and in an SMS
    (``tests/fixtures/offer_templates/spring``)."""
    shutil.copytree(OFFER_TEMPLATES / "spring", root / "templates" / name)
    return root / "templates"


def offer_rule(*, pool: str = "spring15", holdout: int = 0, channels: str = "[email]", extra: str = "",
               name: str = "spring", discount: str = "15%", terms: str = "valid_days: 14") -> LoadedRule:
    return loaded_rule(f"""
name: {name}
trigger: {{type: inactivity, days: 30}}
template: spring
topic: offers
channels: {channels}
holdout_percent: {holdout}
offer: {{pool: {pool}, discount: {discount}, {terms}}}
{extra}
""", f"{name}.yaml")


def lapsed(engine: Engine, count: int, *, prefix: str = "c") -> list[int]:
    """``count`` customers with email consent whose only order was 40 days before NOW."""
    with transaction(engine) as session:
        ids = bulk_customers(session, count, prefix=prefix)
        session.execute(insert(Order), [
            {"external_id": f"{prefix}-old-{cid}", "customer_id": cid, "ordered_at": NOW - timedelta(days=40),
             "amount": Decimal("50"), "currency": "CNY", "source": "import"} for cid in ids])
    return ids


def offer_shop(engine: Engine, db_url: str, tmp_path: Path, *, customers: int, codes: int,
               **settings: Any) -> Settings:
    """Embedded settings with the offer template, ``customers`` lapsed
    customers and a pool ``spring15`` of ``codes`` codes."""
    configured = make_settings(tmp_path, db_url, templates_dir=offer_templates(tmp_path), **settings)
    lapsed(engine, customers)
    generate_codes(engine, "spring15", codes)
    return configured


def generate_codes(engine: Engine, pool: str, count: int, **options: object) -> None:
    with transaction(engine) as session:
        coupons.generate(session, pool, count=count, now=NOW - timedelta(days=1), prefix="SP15-",
                         **options)  # type: ignore[arg-type]


def codes_by_message(engine: Engine) -> dict[int, str]:
    """Message id → the code it was given."""
    with Session(engine) as s:
        rows = s.execute(select(Coupon.message_id, Coupon.code).where(Coupon.message_id.is_not(None)))
        return {m: c for m, c in rows}


def statuses(engine: Engine) -> dict[int, MessageStatus]:
    with Session(engine) as s:
        return {m: st for m, st in s.execute(select(Message.id, Message.status))}


def delivered_emails(outbox: Path) -> dict[int, email.message.EmailMessage]:
    """Message id → the email the file outbox holds for it."""
    found = {}
    for path in (outbox / "email").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[int(path.stem)] = message
    return found  # type: ignore[return-value]


def delivered_sms(outbox: Path) -> list[dict[str, object]]:
    file = outbox / "sms.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []

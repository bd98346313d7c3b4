"""Offers and privacy: the export shows a customer their codes and what became
of them; erasure takes the codes' text (the shop can tell whose a code was)
and keeps the redemptions, so the revenue figures stay right."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from offer_helpers import NOW, codes_by_message, offer_rule, offer_shop
from outreach.planning.launch import launch
from outreach.store import coupons, responses
from outreach.store.engine import transaction
from outreach.store.erasure import erase
from outreach.store.export import export_customer
from outreach.store.models import Base, CouponRedemption, Customer, Message
from outreach.store.redemptions import offer_results


def order(session: Session, ext: str, customer: str, amount: str, code: str, days: int) -> None:
    responses.record_order(session, responses.IncomingOrder(
        external_id=ext, customer_external_id=customer, ordered_at=NOW + timedelta(days=days), amount=Decimal(amount),
        currency="CNY", coupon_code=code), source="webhook", payload={})


def every_value(engine: Engine) -> str:
    """Every value of every column of every table, as one text."""
    with engine.connect() as conn:
        return "\n".join(json.dumps(v, default=str) for table in Base.metadata.sorted_tables
                         for row in conn.execute(select(table)) for v in row if v is not None)


def test_export_shows_the_codes_and_erasure_keeps_the_redemptions_without_the_codes(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given two customers each sent a code; Ada redeems hers, passes it on to Bo, who uses it too, and his own
    settings = offer_shop(engine, db_url, tmp_path, customers=2, codes=4)
    launch(settings, engine, [offer_rule()], now=NOW, simulated=True)
    with Session(engine) as s:
        owner = dict(s.execute(select(Customer.external_id, Message.id).join(Message)).all())
    ada_code, bo_code = (codes_by_message(engine)[owner[ext]] for ext in ("c000000", "c000001"))
    with transaction(engine) as s:
        order(s, "R-1", "c000000", "85.00", ada_code, days=1)
        order(s, "R-2", "c000001", "170.00", ada_code, days=2)
        order(s, "R-3", "c000001", "42.50", bo_code, days=3)
    # When Ada asks what is held about her
    with Session(engine) as s:
        exported = export_customer(s, "c000000", now=NOW)
    # Then she sees her code, its terms, her redemption and that someone else used it (not who, not for what)
    assert exported["coupons"] == [{
        "code": ada_code, "pool": "spring15", "message_id": owner["c000000"], "given_at": NOW,
        "expires_on": (NOW + timedelta(days=14)).date(), "percent_off": Decimal("15.00"), "amount_off": None,
        "currency": None, "redemptions": [
            {"order": "R-1", "ordered_at": NOW + timedelta(days=1), "duplicate": False, "amount": Decimal("85.00"),
             "currency": "CNY", "discount": Decimal("15.00")},
            {"order": None, "ordered_at": NOW + timedelta(days=2), "duplicate": True, "amount": None,
             "currency": None, "discount": None}]}]
    with Session(engine) as s:
        figures = offer_results(s)
        kept = s.execute(select(CouponRedemption.order_id, CouponRedemption.message_id, CouponRedemption.amount,
                                CouponRedemption.duplicate).order_by(CouponRedemption.order_id)).all()
        counts = coupons.pool_counts(s, today=NOW.date())
    assert ada_code in every_value(engine)  # the search below can find what it looks for
    # When Ada is erased
    report = erase(engine, "c000000", now=NOW + timedelta(days=10))
    # Then her code's text is nowhere — not on her code, her order, or the order Bo placed with it …
    assert report.coupon_codes_erased == 1 and ada_code not in every_value(engine)
    # … while the redemptions, the report's figures and the pool's counts are as they were
    with Session(engine) as s:
        assert offer_results(s) == figures
        assert s.execute(select(CouponRedemption.order_id, CouponRedemption.message_id, CouponRedemption.amount,
                                CouponRedemption.duplicate).order_by(CouponRedemption.order_id)).all() == kept
        assert coupons.pool_counts(s, today=NOW.date()) == counts
        # And Bo's own code and export are untouched
        assert [c["code"] for c in export_customer(s, "c000001", now=NOW)["coupons"]] == [bo_code]
    assert figures[0].redemptions == 2 and figures[0].duplicate_uses == 1

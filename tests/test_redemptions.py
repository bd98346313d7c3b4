"""Redemption = exact attribution: an order that carries a message's code is
that message's conversion — once; a second order with the code is a
duplicate use; the discount is the order's own figure or the offer's terms;
whatever arrives first, and whether it comes by the signed webhook or CSV."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from offer_helpers import NOW, codes_by_message, generate_codes, lapsed, offer_rule, offer_shop, offer_templates
from outreach.config import load_settings
from outreach.importing import import_csv
from outreach.planning.launch import launch
from outreach.store import coupons, redemptions, responses
from outreach.store.engine import transaction
from outreach.store.models import Coupon, CouponRedemption, Customer, Message, Order, Rule
from outreach.store.redemptions import OfferResult, offer_results
from outreach.webhooks.app import create_app
from outreach.webhooks.orders import signed_headers
from outreach.webhooks.server import free_port, serve_in_thread
from policy_factories import make_settings

ARRIVAL = NOW + timedelta(days=5)


@dataclass(frozen=True)
class Given:
    customer: str  # external id
    message_id: int
    code: str


def send_offers(engine: Engine, db_url: str, tmp_path: Path, *, customers: int = 3) -> list[Given]:
    """Launch the offer rule at NOW to ``customers`` lapsed customers; what each was given."""
    settings = offer_shop(engine, db_url, tmp_path, customers=customers, codes=customers + 2)
    launch(settings, engine, [offer_rule()], now=NOW, simulated=True)
    given = codes_by_message(engine)
    with Session(engine) as s:
        owners = dict(s.execute(select(Message.id, Customer.external_id).join(Customer)).all())
    return sorted((Given(owners[m], m, c) for m, c in given.items()), key=lambda g: g.customer)


def uses(engine: Engine) -> list[tuple[str, int | None, str, str, bool, str]]:
    """(order, message, amount, discount, duplicate, discount source) of every redemption, by order."""
    with Session(engine) as s:
        return [(ext, r.message_id, str(r.amount), str(r.discount), r.duplicate, r.discount_source)
                for r, ext in s.execute(select(CouponRedemption, Order.external_id).join(Order)
                                        .order_by(Order.external_id))]


def results(engine: Engine) -> list[OfferResult]:
    with Session(engine) as s:
        return offer_results(s)


# ------------------------------------------------------------------ the order webhook, over HTTP
@pytest.fixture
def shop_client(engine: Engine) -> Iterator[httpx.Client]:
    settings = load_settings(public_url=f"http://127.0.0.1:{free_port()}", secret_key="s3cret",
                             order_webhook_secret="shop-secret")
    app = create_app(settings, engine, clock=lambda: ARRIVAL)
    with serve_in_thread(app, port=int(settings.public_url.rsplit(":", 1)[1])) as base, \
            httpx.Client(base_url=base) as http:
        yield http


def post_order(client: httpx.Client, *, at: datetime = ARRIVAL, **order: Any) -> dict[str, Any]:
    body = json.dumps({"currency": "CNY", **order}).encode()
    response = client.post("/webhooks/orders", content=body, headers=signed_headers("shop-secret", body, at=at))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_orders_through_the_signed_webhook_redeem_once_then_count_as_duplicates(
    engine: Engine, db_url: str, tmp_path: Path, shop_client: httpx.Client
) -> None:
    first, second, _ = send_offers(engine, db_url, tmp_path)
    # When the first customer orders with their code, typed in lower case, two days after the send
    post_order(shop_client, external_id="S-1", customer_id=first.customer, amount="85.00",
               ordered_at="2026-06-03T10:00:00Z", coupon_code=first.code.lower())
    # Then the order is their message's conversion, and the discount is the offer's 15% of 100
    assert uses(engine) == [("S-1", first.message_id, "85.00", "15.00", False, "offer")]
    with Session(engine) as s:
        assert s.scalar(select(Order.coupon_code).where(Order.external_id == "S-1")) == first.code
    # When someone else uses the same code a day later
    post_order(shop_client, external_id="S-2", customer_id=second.customer, amount="170.00",
               ordered_at="2026-06-04T10:00:00Z", coupon_code=first.code)
    # Then it is a duplicate use of that message's code, not a second conversion
    assert [u[4] for u in uses(engine)] == [False, True]
    assert results(engine) == [OfferResult(
        rule="spring", group=(), currency="CNY", redemptions=1, revenue=Decimal("85.00"), discount=Decimal("15.00"),
        duplicate_uses=1, duplicate_revenue=Decimal("170.00"), duplicate_discount=Decimal("30.00"))]
    # When the shop sends an update of the first order, with the discount it gave
    post_order(shop_client, at=ARRIVAL + timedelta(seconds=1), external_id="S-1", customer_id=first.customer,
               amount="68.00", discount="12.00", ordered_at="2026-06-03T10:00:00Z", coupon_code=first.code)
    # Then the redemption follows the order: its amount, the shop's discount; still one conversion
    assert uses(engine)[0] == ("S-1", first.message_id, "68.00", "12.00", False, "order")
    assert [u[4] for u in uses(engine)] == [False, True]
    # And when an update takes the code off the first order, the second order is the redemption
    post_order(shop_client, at=ARRIVAL + timedelta(seconds=2), external_id="S-1", customer_id=first.customer,
               amount="80.00", ordered_at="2026-06-03T10:00:00Z")
    assert uses(engine) == [("S-2", first.message_id, "170.00", "30.00", False, "offer")]
    # A delivery replayed (signed earlier than the stored version) changes nothing
    post_order(shop_client, external_id="S-1", customer_id=first.customer, amount="85.00",
               ordered_at="2026-06-03T10:00:00Z", coupon_code=first.code)
    assert [u[0] for u in uses(engine)] == ["S-2"]


def test_unknown_free_and_earlier_codes_stay_on_the_order_and_attribute_nothing(
    engine: Engine, db_url: str, tmp_path: Path, shop_client: httpx.Client
) -> None:
    first, *_ = send_offers(engine, db_url, tmp_path)
    with Session(engine) as s:
        free = s.scalar(select(Coupon.code).where(Coupon.given_at.is_(None)))
    # An unknown code, a code of the pool no message was given, and the right code on an order
    # dated before the message was sent
    post_order(shop_client, external_id="U-1", customer_id=first.customer, amount="10.00",
               ordered_at="2026-06-03T10:00:00Z", coupon_code="Other-Shop-10")
    post_order(shop_client, external_id="U-2", customer_id=first.customer, amount="10.00",
               ordered_at="2026-06-03T10:00:00Z", coupon_code=free)
    post_order(shop_client, external_id="U-3", customer_id=first.customer, amount="10.00",
               ordered_at="2026-05-30T10:00:00Z", coupon_code=first.code)
    assert uses(engine) == [] and results(engine) == []
    with Session(engine) as s:
        kept = dict(s.execute(select(Order.external_id, Order.coupon_code).where(Order.external_id.like("U-%"))).all())
    assert kept == {"U-1": "OTHER-SHOP-10", "U-2": free, "U-3": first.code}


# ------------------------------------------------------------------ CSV orders, and what comes first
def orders_csv(path: Path, rows: list[str]) -> Path:
    header = "external_id,customer_id,ordered_at,amount,currency,coupon_code,discount"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_orders_imported_from_csv_redeem_like_webhook_orders_and_again_change_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    first, second, third = send_offers(engine, db_url, tmp_path)
    file = orders_csv(tmp_path / "orders.csv", [
        f"C-1,{first.customer},2026-06-02T08:00:00Z,50.00,CNY,{first.code},",
        f"C-2,{second.customer},2026-06-02T09:00:00Z,90.00,USD,{second.code.lower()},9.50",
        f"C-3,{third.customer},2026-06-03T09:00:00Z,40.00,CNY,{first.code},",
    ])
    for _ in range(2):  # imported twice: the same redemptions
        import_csv(engine, "orders", file, now=ARRIVAL)
        assert uses(engine) == [("C-1", first.message_id, "50.00", "8.82", False, "offer"),
                                ("C-2", second.message_id, "90.00", "9.50", False, "order"),
                                ("C-3", first.message_id, "40.00", "7.06", True, "offer")]
    assert {(r.currency, r.redemptions, r.revenue, r.duplicate_uses) for r in results(engine)} == {
        ("CNY", 1, Decimal("50.00"), 1), ("USD", 1, Decimal("90.00"), 0)}


def test_an_order_that_arrived_before_its_code_was_given_is_redeemed_when_it_is(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    # Given a shop whose order, dated after the send, is imported before the campaign runs
    # (the shop's clock ahead of ours, or a run with --now): its code is still free in the pool
    settings = make_settings(tmp_path, db_url, templates_dir=offer_templates(tmp_path))
    lapsed(engine, 1)
    generate_codes(engine, "spring15", 3)
    with Session(engine) as s:
        first_free = coupons.codes_of(s, "spring15")[0][0]
    import_csv(engine, "orders", orders_csv(tmp_path / "o.csv", [f"E-1,c000000,2026-06-02T08:00:00Z,85.00,CNY,"
                                                                   f"{first_free},"]), now=NOW)
    assert uses(engine) == []
    # When the campaign gives that code to the customer's message
    launch(settings, engine, [offer_rule()], now=NOW, simulated=True)
    [(message_id, code)] = codes_by_message(engine).items()
    # Then the order already in is its redemption
    assert code == first_free
    assert uses(engine) == [("E-1", message_id, "85.00", "15.00", False, "offer")]


# ------------------------------------------------------------------ the report's figures, checked independently
def _oracle(orders: dict[int, dict[str, Any]], owner: dict[str, tuple[str, datetime, str]],
            terms: dict[str, tuple[Decimal | None, Decimal | None, str | None]]) -> set[tuple[Any, ...]]:
    """offer_results by hand: per (rule, currency) — redemptions, revenue, discount, duplicates…"""
    by_code: dict[str, list[tuple[datetime, int]]] = {}
    for order_id, o in orders.items():
        code = o["code"]
        if code in owner and o["at"] >= owner[code][1]:
            by_code.setdefault(code, []).append((o["at"], order_id))
    totals: dict[tuple[str, str], list[Any]] = {}
    for code, found in by_code.items():
        rule = owner[code][0]
        for rank, (_, order_id) in enumerate(sorted(found)):
            o, duplicate = orders[order_id], rank > 0
            percent, amount_off, currency = terms[rule]
            if o["discount"] is not None:
                discount, in_currency = o["discount"], o["currency"]
            elif percent is not None:
                discount = (o["amount"] * percent / (100 - percent)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                in_currency = o["currency"]
            else:
                discount, in_currency = amount_off, currency
            money = totals.setdefault((rule, o["currency"]), [0, Decimal(0), Decimal(0), 0, Decimal(0), Decimal(0)])
            money[3 if duplicate else 0] += 1
            money[4 if duplicate else 1] += o["amount"]
            totals.setdefault((rule, in_currency), [0, Decimal(0), Decimal(0), 0, Decimal(0), Decimal(0)])[
                5 if duplicate else 2] += discount
    return {(rule, currency, *v) for (rule, currency), v in totals.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offer_results_agree_with_a_count_by_hand(engine: Engine, db_url: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # Given two offer rules — 15% off, and 20 CNY off — sent to 24 customers
    settings = make_settings(tmp_path, db_url, templates_dir=offer_templates(tmp_path))
    lapsed(engine, 24)
    generate_codes(engine, "p15", 14)
    generate_codes(engine, "p20", 14)
    rules = [offer_rule(name="pct", pool="p15", extra="segment: {field: external_id, lt: c000012}"),
             offer_rule(name="amt", pool="p20", discount="20 CNY", extra="segment: {field: external_id, gte: c000012}")]
    launch(settings, engine, rules, now=NOW, simulated=True)
    with Session(engine) as s:
        owner = {code: (rule, given, ext) for code, rule, given, ext in s.execute(
            select(Coupon.code, Message.rule_id, Coupon.given_at, Customer.external_id)
            .join(Message, Message.id == Coupon.message_id).join(Customer, Customer.id == Message.customer_id))}
        names = dict(s.execute(select(Rule.id, Rule.name)).all())
        free = list(s.scalars(select(Coupon.code).where(Coupon.given_at.is_(None))))
    owner = {code: (names[rule], given, ext) for code, (rule, given, ext) in owner.items()}
    assert len(owner) == 24
    terms = {"pct": (Decimal(15), None, None), "amt": (None, Decimal(20), "CNY")}
    # When 60 orders and updates arrive in random order: given, free and unknown codes, before and
    # after the send, in two currencies, some saying their discount
    orders: dict[int, dict[str, Any]] = {}
    with transaction(engine) as s:
        for _ in range(60):
            ext = f"R-{rng.randrange(40)}"  # some numbers again: updates of an order
            code = rng.choice([*owner, *owner, *free[:2], "NOT-OURS-1", None])
            o = {"code": code, "at": NOW + timedelta(hours=rng.randint(-48, 24 * 10)),
                 "amount": Decimal(rng.randint(100, 50000)) / 100, "currency": rng.choice(["CNY", "CNY", "USD"]),
                 "discount": rng.choice([None, None, Decimal(rng.randint(1, 900)) / 100])}
            order_id, _ = responses.record_order(s, responses.IncomingOrder(
                external_id=ext, customer_external_id=f"c{rng.randrange(24):06d}", ordered_at=o["at"],
                amount=o["amount"], currency=o["currency"], coupon_code=code, discount=o["discount"]),
                source="test", payload={})
            orders[order_id] = o
    # Then the report's function says what a count by hand says
    got = {(r.rule, r.currency, r.redemptions, r.revenue, r.discount, r.duplicate_uses, r.duplicate_revenue,
            r.duplicate_discount) for r in results(engine)}
    assert got == _oracle(orders, owner, terms)
    assert any(r.duplicate_uses for r in results(engine))  # the data exercised duplicates
    with Session(engine) as s:
        assert redemptions.codes_given(s) == {("amt",): 12, ("pct",): 12}

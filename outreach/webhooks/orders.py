"""The shop's order webhook: ``POST /webhooks/orders``, signed with HMAC-SHA256.

The body is JSON (:class:`OrderIn`), signed with the order secret as
``outreach.webhooks.signing`` describes (a bad signature or a replay is a
401 and stores nothing); a delivery signed no later than the stored version
of its order (an old body replayed after an update) changes nothing; a bad payload is a 422 naming the
field, never a 500 (the body is at most ``MAX_BODY`` bytes of UTF-8 JSON,
at most ``MAX_ITEMS`` items, amounts within the schema's two decimals,
dates from 2000 to tomorrow, no control characters); a known order is
upserted in one atomic statement (its items replaced), its ORDER event
recorded once, and the coupon code it carries made a redemption of the
message the code was given to (``store.redemptions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.errors import PayloadError
from outreach.importing.values import MAX_AMOUNT
from outreach.store import order_writes
from outreach.store.engine import transaction
from outreach.store.order_writes import IncomingOrder, OrderLine
from outreach.webhooks import signing
from outreach.webhooks.batching import GroupCommit
from outreach.webhooks.links import RETRY_AFTER_S
from outreach.webhooks.signing import PLAIN_TEXT, signed_headers

__all__ = ["PATH", "OrderIn", "routes", "signed_headers"]

log = logging.getLogger(__name__)

PATH = "/webhooks/orders"
#: At most this many lines per order (they fit many times over in ``signing.MAX_BODY``).
MAX_ITEMS = 1000
MAX_QUANTITY = 1_000_000
#: Orders are dated up to a day ahead of the server's clock (time zones, clocks that run ahead).
AHEAD = timedelta(days=1)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64, pattern=PLAIN_TEXT)
    category: str | None = Field(default=None, max_length=64, pattern=PLAIN_TEXT)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    amount: Decimal | None = Field(default=None, ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False)


class OrderIn(BaseModel):
    """An order as the shop's webhook sends it."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=128, pattern=PLAIN_TEXT)
    customer_id: str = Field(min_length=1, max_length=128, pattern=PLAIN_TEXT,
                             description="the customer's external id")
    ordered_at: datetime
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False)
    currency: str = Field(default="CNY", pattern=r"^[A-Za-z]{3}$")
    coupon_code: str | None = Field(default=None, max_length=64, pattern=PLAIN_TEXT,
                                    description="the coupon code the customer used (compared without regard to case)")
    discount: Decimal | None = Field(default=None, ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False,
                                     description="what the coupon took off the order, in its currency")
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_ITEMS)

    @field_validator("ordered_at")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return signing.plausible_time(value, info, ahead=AHEAD, what="an order", upto="tomorrow")

    def incoming(self) -> IncomingOrder:
        return IncomingOrder(
            external_id=self.external_id, customer_external_id=self.customer_id, ordered_at=self.ordered_at,
            amount=self.amount, currency=self.currency.upper(), coupon_code=self.coupon_code, discount=self.discount,
            items=tuple(OrderLine(sku=i.sku, category=i.category, quantity=i.quantity, amount=i.amount)
                        for i in self.items),
        )


@dataclass(kw_only=True)
class _Delivery:
    """One order delivery waiting for its batch, and what became of it."""

    order: OrderIn
    signed_at: datetime
    answer: dict[str, Any] | None = None
    refused: PayloadError | None = None


def store_batch(engine: Engine, batch: Sequence[_Delivery]) -> None:
    """Every delivery of ``batch`` in one transaction, written set-based
    (:func:`outreach.store.order_writes.record_orders`: a few statements for
    the batch, one commit). One the store refuses (an unknown customer) is
    answered 422 and writes nothing; the others commit; a database error
    fails the batch, and :class:`GroupCommit` writes each delivery again alone."""
    with transaction(engine) as session:
        written = order_writes.record_orders(
            session, [order_writes.OrderDelivery(order=d.order.incoming(), payload=d.order.model_dump(mode="json"),
                                                 reported_at=d.signed_at) for d in batch], source="webhook")
    for delivery, result in zip(batch, written, strict=True):
        delivery.answer = delivery.refused = None
        if result.refused is not None:
            delivery.refused = result.refused
            continue
        delivery.answer = {"order_id": result.order_id, "external_id": delivery.order.external_id}
        if not result.stored:
            delivery.answer["unchanged"] = "a version signed at the same time or later is stored"


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    # PostgreSQL: deliveries arriving together share a transaction (group
    # commit). SQLite has one writer and cheap commits: one transaction each.
    grouped = engine.dialect.name == "postgresql"
    deliveries: GroupCommit[_Delivery] = GroupCommit(lambda batch: store_batch(engine, batch))

    def store_alone(delivery: _Delivery) -> None:
        store_batch(engine, [delivery])

    async def orders(request: Request) -> Response:
        try:
            body, signed_at = await signing.verified_body(
                request, secret=settings.require_order_secret(), clock=clock,
                too_long_hint=f"send one order per request, at most {MAX_ITEMS} items")
            order = signing.parsed(OrderIn, body, context={"now": clock()})
        except signing.Refused as refused:
            return refused.response
        delivery = _Delivery(order=order, signed_at=signed_at)
        try:
            if grouped:
                await deliveries.submit(delivery)
            else:
                await run_in_threadpool(store_alone, delivery)
        except SQLAlchemyError:
            log.exception("an order could not be stored")
            return JSONResponse({"error": "the database cannot be reached", "hint": "deliver it again later"},
                                status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        if delivery.refused is not None:
            return signing.unstorable(delivery.refused)
        assert delivery.answer is not None
        return JSONResponse(delivery.answer)

    return [Route(PATH, orders, methods=["POST"])]

"""The shop's order webhook: ``POST /webhooks/orders``, signed with HMAC-SHA256.

The body is JSON (:class:`OrderIn`), signed with the order secret as
``outreach.webhooks.signing`` describes (a bad signature or a replay is a
401 and stores nothing); a delivery signed no later than the stored version
of its order (an old body replayed after an update) changes nothing; a bad payload is a 422 naming the
field, never a 500 (the body is at most ``MAX_BODY`` bytes of UTF-8 JSON,
at most ``MAX_ITEMS`` items, amounts within the schema's two decimals,
dates from 2000 to tomorrow, no control characters); a known order is
upserted in one atomic statement (its items replaced), its ORDER event
recorded once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.errors import PayloadError
from outreach.importing.values import MAX_AMOUNT
from outreach.store import responses
from outreach.store.engine import transaction
from outreach.webhooks import signing
from outreach.webhooks.signing import PLAIN_TEXT, signed_headers

__all__ = ["PATH", "OrderIn", "routes", "signed_headers"]

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
    coupon_code: str | None = Field(default=None, max_length=64, pattern=PLAIN_TEXT)
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_ITEMS)

    @field_validator("ordered_at")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        return signing.plausible_time(value, info, ahead=AHEAD, what="an order", upto="tomorrow")

    def incoming(self) -> responses.IncomingOrder:
        return responses.IncomingOrder(
            external_id=self.external_id, customer_external_id=self.customer_id, ordered_at=self.ordered_at,
            amount=self.amount, currency=self.currency.upper(), coupon_code=self.coupon_code,
            items=tuple(responses.OrderLine(sku=i.sku, category=i.category, quantity=i.quantity, amount=i.amount)
                        for i in self.items),
        )


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    async def orders(request: Request) -> Response:
        try:
            body, signed_at = await signing.verified_body(
                request, secret=settings.require_order_secret(), clock=clock,
                too_long_hint=f"send one order per request, at most {MAX_ITEMS} items")
            order = signing.parsed(OrderIn, body, context={"now": clock()})
        except signing.Refused as refused:
            return refused.response

        def act() -> dict[str, Any]:
            with transaction(engine) as session:
                order_id, stored = responses.record_order(session, order.incoming(), source="webhook",
                                                          payload=order.model_dump(mode="json"),
                                                          reported_at=signed_at)
                answer: dict[str, Any] = {"order_id": order_id, "external_id": order.external_id}
                if not stored:
                    answer["unchanged"] = "a version signed at the same time or later is stored"
                return answer

        try:
            return JSONResponse(await run_in_threadpool(act))
        except PayloadError as exc:
            return signing.unstorable(exc)

    return [Route(PATH, orders, methods=["POST"])]

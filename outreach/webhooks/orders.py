"""The shop's order webhook: ``POST /webhooks/orders``, signed with HMAC-SHA256.

The body is JSON (:class:`OrderIn`); the header ``X-Outreach-Signature:
sha256=<hex>`` is the HMAC of the raw body with the order secret. A bad
signature is a 401 and stores nothing; a bad payload is a 422 naming the
field; a known order is upserted (its items replaced), its ORDER event
recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.clock import to_naive_utc
from outreach.config import Settings
from outreach.errors import PayloadError
from outreach.store import responses
from outreach.store.engine import transaction

PATH = "/webhooks/orders"
SIGNATURE_HEADER = "X-Outreach-Signature"


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    quantity: int = Field(default=1, ge=1)
    amount: Decimal | None = Field(default=None, ge=0)


class OrderIn(BaseModel):
    """An order as the shop's webhook sends it."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=128)
    customer_id: str = Field(min_length=1, max_length=128, description="the customer's external id")
    ordered_at: datetime
    amount: Decimal = Field(ge=0)
    currency: str = Field(default="CNY", pattern=r"^[A-Za-z]{3}$")
    coupon_code: str | None = Field(default=None, max_length=64)
    items: list[ItemIn] = Field(default_factory=list)

    @field_validator("ordered_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_naive_utc(value)

    def incoming(self) -> responses.IncomingOrder:
        return responses.IncomingOrder(
            external_id=self.external_id, customer_external_id=self.customer_id, ordered_at=self.ordered_at,
            amount=self.amount, currency=self.currency.upper(), coupon_code=self.coupon_code,
            items=tuple(responses.OrderLine(sku=i.sku, category=i.category, quantity=i.quantity, amount=i.amount)
                        for i in self.items),
        )


def order_signature(secret: str, body: bytes) -> str:
    """The header value the shop sends: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _errors(errors: list[dict[str, Any]], status: int) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    async def orders(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given, order_signature(settings.require_order_secret(), body)):
            return JSONResponse({"error": f"missing or wrong {SIGNATURE_HEADER}",
                                 "hint": "sign the raw body: sha256=<hex HMAC-SHA256 with the order secret>"},
                                status_code=401)
        try:
            order = OrderIn.model_validate(json.loads(body))
        except json.JSONDecodeError as exc:
            return _errors([{"field": "(body)", "message": f"not JSON: {exc}"}], 422)
        except ValidationError as exc:
            return _errors([{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                            for e in exc.errors()], 422)

        def act() -> dict[str, Any]:
            with transaction(engine) as session:
                row = responses.record_order(session, order.incoming(), source="webhook",
                                             payload=order.model_dump(mode="json"))
                return {"order_id": row.id, "external_id": row.external_id}

        try:
            return JSONResponse(await run_in_threadpool(act))
        except PayloadError as exc:
            p = exc.problems[0]
            return _errors([{"field": p.field, "message": p.message, "hint": p.hint}], 422)

    return [Route(PATH, orders, methods=["POST"])]

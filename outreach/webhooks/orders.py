"""The shop's order webhook: ``POST /webhooks/orders``, signed with HMAC-SHA256.

The body is JSON (:class:`OrderIn`); ``X-Outreach-Timestamp`` is the Unix
time of sending and ``X-Outreach-Signature: sha256=<hex>`` the HMAC of
``"<timestamp>." + body`` with the order secret. A bad signature, or a
timestamp more than five minutes from the server's clock (a replay), is a
401 and stores nothing; a delivery signed no later than the stored version
of its order (an old body replayed after an update) changes nothing; a bad payload is a 422 naming the
field, never a 500 (the body is at most ``MAX_BODY`` bytes of UTF-8 JSON,
at most ``MAX_ITEMS`` items, amounts within the schema's two decimals,
dates from 2000 to tomorrow, no control characters); a known order is
upserted in one atomic statement (its items replaced), its ORDER event
recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.clock import to_naive_utc, utcnow
from outreach.config import Settings
from outreach.errors import PayloadError
from outreach.importing.values import MAX_AMOUNT
from outreach.store import responses
from outreach.store.engine import transaction

PATH = "/webhooks/orders"
SIGNATURE_HEADER = "X-Outreach-Signature"
TIMESTAMP_HEADER = "X-Outreach-Timestamp"
#: A delivery signed longer ago (or ahead) than this is a replay, refused.
REPLAY_WINDOW = timedelta(minutes=5)
SIGN_HINT = ('sign "<X-Outreach-Timestamp>." + the raw body: sha256=<hex HMAC-SHA256 with the order secret>, '
             "the timestamp being the Unix time of sending")
#: The largest body read (an order of MAX_ITEMS lines fits many times over):
#: a longer one is refused before it is read further, signed or not.
MAX_BODY = 1 << 20
MAX_ITEMS = 1000
MAX_QUANTITY = 1_000_000
#: Text fields hold no control characters (NUL is refused by PostgreSQL; the rest break reports).
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"
#: Orders are dated from this year to a day ahead of the server's clock.
EARLIEST = datetime(2000, 1, 1)


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
        try:
            utc = to_naive_utc(value)
        except OverflowError:
            raise ValueError("the date is out of range") from None
        # The later of the wall clock and the server's (a simulated one in the demo).
        now = max(utcnow(), (info.context or {}).get("now") or EARLIEST)
        if not EARLIEST <= utc <= now + timedelta(days=1):
            raise ValueError(f"{utc:%Y-%m-%d} is not a date an order can have (from {EARLIEST:%Y} to tomorrow)")
        return utc

    def incoming(self) -> responses.IncomingOrder:
        return responses.IncomingOrder(
            external_id=self.external_id, customer_external_id=self.customer_id, ordered_at=self.ordered_at,
            amount=self.amount, currency=self.currency.upper(), coupon_code=self.coupon_code,
            items=tuple(responses.OrderLine(sku=i.sku, category=i.category, quantity=i.quantity, amount=i.amount)
                        for i in self.items),
        )


def order_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header the shop sends: ``sha256=<hex HMAC-SHA256 of
    "<timestamp>." + body>``, the timestamp being ``X-Outreach-Timestamp``."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, at: datetime) -> dict[str, str]:
    """Every header of a signed order delivery made at ``at`` (naive UTC)."""
    timestamp = int(at.replace(tzinfo=UTC).timestamp())
    return {SIGNATURE_HEADER: order_signature(secret, body, timestamp), TIMESTAMP_HEADER: str(timestamp),
            "Content-Type": "application/json"}


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (what was read is dropped)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _errors(errors: list[dict[str, Any]], status: int) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    async def orders(request: Request) -> Response:
        body = await _bounded_body(request)
        if body is None:
            return JSONResponse({"error": f"the body is longer than {MAX_BODY:,} bytes",
                                 "hint": f"send one order per request, at most {MAX_ITEMS} items"},
                                status_code=413)
        given, stamp = request.headers.get(SIGNATURE_HEADER, ""), request.headers.get(TIMESTAMP_HEADER, "")
        if not stamp.isdigit() or len(stamp) > 10 or not hmac.compare_digest(
                given, order_signature(settings.require_order_secret(), body, int(stamp))):
            return JSONResponse({"error": f"missing or wrong {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}",
                                 "hint": SIGN_HINT}, status_code=401)
        signed_at = datetime.fromtimestamp(int(stamp), UTC).replace(tzinfo=None)
        if abs(signed_at - clock()) > REPLAY_WINDOW:
            return JSONResponse({"error": f"{TIMESTAMP_HEADER} {signed_at:%Y-%m-%d %H:%M:%S} UTC is more than "
                                          f"{REPLAY_WINDOW.seconds // 60} minutes from now: a replayed delivery",
                                 "hint": "sign each delivery when it is sent; check the shop server's clock"},
                                status_code=401)
        try:
            order = OrderIn.model_validate(json.loads(body.decode("utf-8")), context={"now": clock()})
        except UnicodeDecodeError as exc:
            return _errors([{"field": "(body)", "message": f"not UTF-8 text (byte {exc.start})"}], 422)
        except json.JSONDecodeError as exc:
            return _errors([{"field": "(body)", "message": f"not JSON: {exc}"}], 422)
        except RecursionError:
            return _errors([{"field": "(body)", "message": "the JSON is nested too deeply"}], 422)
        except ValidationError as exc:
            return _errors([{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                            for e in exc.errors()], 422)

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
            p = exc.problems[0]
            return _errors([{"field": p.field, "message": p.message, "hint": p.hint}], 422)

    return [Route(PATH, orders, methods=["POST"])]

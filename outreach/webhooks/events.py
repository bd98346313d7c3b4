"""The events API: ``POST /webhooks/events``, custom events as they happen.

A shop (or any system of the marketer's) reports what a customer did — a
cart abandoned, a tasting attended — so a rule whose trigger is that event
fires at the next ``run`` or scheduler tick (every few minutes), not at the
next CSV import, and its templates can show the event's properties
(``event.properties.cart_url``).

The body is one event (:class:`EventIn`) or a JSON array of at most
``MAX_EVENTS``, signed like the order webhook (``outreach.webhooks.signing``,
the order secret). Every event has the sender's ``id``: a retried delivery
is stored once (the stored version is replaced). Properties are a JSON
object of at most ``MAX_PROPERTIES`` names, nested at most ``MAX_DEPTH``
deep, with no control characters and no NaN; an event is dated from 2000
to five minutes ahead of the server's clock. A bad event is a 422 naming
it, and then none of the delivery is stored; an unknown customer too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationInfo, field_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.errors import PayloadError
from outreach.store import responses
from outreach.store.engine import transaction
from outreach.webhooks import signing
from outreach.webhooks.signing import PLAIN_TEXT

PATH = "/webhooks/events"
MAX_EVENTS = 500
MAX_PROPERTIES = 100
MAX_DEPTH = 8
#: An event may be dated this far ahead of the server's clock (clocks drift), no further.
AHEAD = timedelta(minutes=5)
#: Event names as rules write them: ``cart_abandoned``, ``tasting.attended``.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValueError(f"{where} holds a control character")
    elif isinstance(value, dict):
        for key, item in value.items():
            if _CONTROL.search(key) or len(key) > 64:
                raise ValueError(f"{where} has a name with a control character or longer than 64: {key[:64]!r}")
            _check_value(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)


class EventIn(BaseModel):
    """One custom event."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=PLAIN_TEXT,
                    description="the sender's id of the event: a retried delivery is stored once")
    customer_id: str = Field(min_length=1, max_length=128, pattern=PLAIN_TEXT,
                             description="the customer's external id")
    name: str = Field(min_length=1, max_length=64, pattern=NAME, description="what happened, e.g. cart_abandoned")
    occurred_at: datetime | None = Field(default=None, description="when it happened (default: when received)")
    properties: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PROPERTIES)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        return signing.plausible_time(value, info, ahead=AHEAD, what="an event", upto="now")

    @field_validator("properties")
    @classmethod
    def _plain(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_value(value, "properties", 1)
        return value

    def incoming(self, received_at: datetime) -> responses.IncomingEvent:
        return responses.IncomingEvent(external_id=self.id, customer_external_id=self.customer_id, name=self.name,
                                       occurred_at=self.occurred_at or received_at, properties=self.properties)


class EventBatch(RootModel[Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS)]]):
    """At most MAX_EVENTS events in one delivery."""


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    async def events(request: Request) -> Response:
        try:
            body, _signed_at = await signing.verified_body(
                request, secret=settings.require_order_secret(), clock=clock,
                too_long_hint=f"send at most {MAX_EVENTS} events per request")
            context = {"now": clock()}
            if body.lstrip().startswith(b"["):
                batch = signing.parsed(EventBatch, body, context=context).root
            else:
                batch = [signing.parsed(EventIn, body, context=context)]
        except signing.Refused as refused:
            return refused.response
        received_at = clock()

        def act() -> list[int]:
            with transaction(engine) as session:
                return responses.record_custom_events(session, [e.incoming(received_at) for e in batch])

        try:
            ids = await run_in_threadpool(act)
        except PayloadError as exc:
            return signing.unstorable(exc)
        return JSONResponse({"stored": [{"id": e.id, "event_id": i} for e, i in zip(batch, ids, strict=True)]})

    return [Route(PATH, events, methods=["POST"])]

"""What every ESP feed shares: the pipeline verify → parse → store → act.

A feed module supplies a ``verify`` (the provider's signature or password,
checked in constant time) and a ``parse`` (its JSON into
:class:`~outreach.store.feedback.FeedEvent`, its vocabulary mapped through a
table, unknown words becoming UNKNOWN); :func:`feed_route` runs them: a body
longer than ``signing.MAX_BODY`` is a 413, a bad signature a 403 that stores
nothing, a body that is not the provider's JSON a 400 naming what is wrong,
and the events — stored once each, acted on once — a 200.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.clock import to_naive_utc
from outreach.config import Settings
from outreach.store import feedback
from outreach.store.engine import transaction
from outreach.store.feedback import FeedEvent
from outreach.webhooks.signing import MAX_BODY, bounded_body

#: The longest id, address or URL taken from a provider's event.
MAX_TEXT = 2000
#: A refusal to answer, or None when the request is the provider's.
Verify = Callable[[Request, bytes], Awaitable[Response | None]]
#: The provider's JSON → events (raises BadPayload).
Parse = Callable[[Any], list[FeedEvent]]
#: The one-time token of a delivery (Mailgun's), or None when the provider has none.
Token = Callable[[Any], str | None]


class BadPayload(ValueError):
    """The body is not what the provider sends: answered 400 with ``field`` and ``message``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def refuse(status: int, error: str, hint: str) -> JSONResponse:
    return JSONResponse({"error": error, "hint": hint}, status_code=status)


def bad_payload(exc: BadPayload, hint: str) -> JSONResponse:
    return JSONResponse({"errors": [{"field": exc.field, "message": exc.message, "hint": hint}]}, status_code=400)


async def read_body(request: Request) -> bytes | Response:
    body = await bounded_body(request)
    if body is None:
        return refuse(413, f"the body is longer than {MAX_BODY:,} bytes", "send fewer events per request")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadPayload("(body)", f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadPayload("(body)", f"not JSON: {exc}") from None
    except RecursionError:
        raise BadPayload("(body)", "the JSON is nested too deeply") from None


# ------------------------------------------------------------------ fields
def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(where, f"expected a JSON object, got {type(value).__name__}")
    return value


def text(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    """A plain string field (no control characters: they break PostgreSQL and reports)."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise BadPayload(f"{where}.{key}" if where else key, "is missing")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadPayload(f"{where}.{key}" if where else key, f"expected text, got {type(value).__name__}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > MAX_TEXT:
        raise BadPayload(f"{where}.{key}" if where else key, "holds control characters or is too long")
    return value


def unix_time(value: Any, where: str) -> datetime:
    if isinstance(value, str) and value.replace(".", "", 1).isdigit():
        value = float(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e11:
        raise BadPayload(where, f"expected a Unix time in seconds, got {value!r}")
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def iso_time(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return to_naive_utc(parsed)
    except (ValueError, OverflowError):
        raise BadPayload(where, f"expected an ISO 8601 time, got {value!r}") from None


def checked(events: list[FeedEvent]) -> list[FeedEvent]:
    """``events``, unless an id or address in them holds control characters
    (PostgreSQL refuses NUL in text; nothing legitimate carries them)."""
    for event in events:
        for name, value in (("event id", event.event_id), ("recipient", event.recipient or ""),
                            ("message reference", " ".join(event.references)), ("url", event.url or ""),
                            ("outreach_message_id", event.outreach_id or "")):
            if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > MAX_TEXT:
                raise BadPayload(name, "holds control characters or is too long")
    return events


# ---------------------------------------------------------------- pipeline
def store(engine: Engine, settings: Settings, events: Sequence[FeedEvent], *, source: str,
          token: str | None = None, now: datetime) -> int | None:
    """Store and act on ``events`` in one transaction; how many were new, or
    None (nothing stored) when ``token`` was seen before."""
    with transaction(engine) as session:
        if token is not None and not feedback.claim_token(session, source=source, token=token, now=now):
            return None
        return feedback.record_feed_events(session, events, soft_bounce_limit=settings.soft_bounce_limit, now=now)


async def saved(engine: Engine, settings: Settings, events: Sequence[FeedEvent], *, source: str,
                token: str | None = None, now: datetime) -> Response:
    """Store ``events`` (off the event loop) and answer: how many were new;
    406 for a replayed token; 503 when the database cannot be reached (the
    provider retries later)."""
    try:
        new = await run_in_threadpool(store, engine, settings, events, source=source, token=token, now=now)
    except OperationalError:
        return refuse(503, "the database is unavailable", "the provider retries the delivery later")
    if new is None:
        return refuse(406, "this delivery's token was used before: a replay", "each signed delivery is accepted once")
    return JSONResponse({"events": len(events), "stored": new, "duplicates": len(events) - new})


def feed_route(path: str, *, source: str, verify: Verify, parse: Parse, engine: Engine, settings: Settings,
               clock: Callable[[], datetime], hint: str, token: Token | None = None) -> Route:
    """The POST route of one ESP feed, running the whole pipeline."""

    async def endpoint(request: Request) -> Response:
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        refusal = await verify(request, body)
        if refusal is not None:
            return refusal
        try:
            data = parse_json(body)
            events = checked(parse(data))
            once = token(data) if token else None
        except BadPayload as exc:
            return bad_payload(exc, hint)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a shape no parser foresaw
            return bad_payload(BadPayload("(body)", f"not the provider's event format ({exc!r})"), hint)
        return await saved(engine, settings, events, source=source, token=once, now=clock())

    return Route(path, endpoint, methods=["POST"])

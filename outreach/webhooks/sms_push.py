"""What the pushes of the Chinese SMS providers share: delivery reports and
replies, POSTed as JSON to a URL with a secret in it.

Neither Aliyun nor Tencent Cloud signs its pushes, so each route carries a
secret path segment — ``/webhooks/aliyun/{secret}/report`` — set by
``aliyun_webhook_secret`` / ``tencent_webhook_secret`` and compared in
constant time; a wrong one is a 404, as if there were no such route. Without
the secret the routes do not exist, and with ``sms_transport`` that provider
``serve`` refuses to start. The secret is part of a URL: 16 to 128 letters,
digits or ``- _ . ~``; it reaches access logs (keep those private).

The pipeline: the secret → the body (at most ``signing.MAX_BODY`` bytes, at
most ``MAX_ITEMS`` items) parsed into :class:`~outreach.store.responses.DeliveryReport`
and :class:`Reply` items — a body that is not the provider's JSON is a 400
saying what is wrong, in the provider's answer format, and stores nothing —
→ reports stored once each as normalized events of their messages, replies
acted on (:mod:`.sms_replies`; R and 拒收 stop too) → the provider's "received"
answer; 503 when the database cannot be reached (the provider pushes again).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.errors import ConfigError
from outreach.store import responses
from outreach.store.engine import transaction
from outreach.webhooks.esp.base import BadPayload, parse_json, read_body
from outreach.webhooks.sms_replies import CHINA_STOP_WORDS, act_on_reply

#: Items one push may hold (the providers batch reports; a push of more is refused).
MAX_ITEMS = 1000
#: The longest reply kept (an SMS reply is far shorter).
MAX_REPLY = 2000
#: What a secret path segment may be.
SECRET = re.compile(r"^[A-Za-z0-9_.~-]{16,128}$")
#: The longest dedupe key the events table holds; longer ones are hashed.
MAX_KEY = 200
SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, kw_only=True)
class Reply:
    phone: str  # E.164
    text: str
    dedupe_key: str
    payload: dict[str, Any]


@dataclass
class Push:
    reports: list[responses.DeliveryReport] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)


#: The provider's JSON → a Push (raises BadPayload).
Parse = Callable[[Any], Push]
#: The provider's answer body: (0 for "received" or a non-zero code, its message).
Answer = Callable[[int, str], dict[str, Any]]


def secret_for(settings: Settings, provider: str) -> str | None:
    """The provider's push secret; None (no routes) when unset — a ConfigError
    when that provider sends the SMS, or when the secret is unfit for a URL."""
    setting = f"{provider}_webhook_secret"
    value = getattr(settings, setting)
    if value is None:
        if settings.sms_transport == provider:
            raise ConfigError(f"sms_transport is '{provider}' but {setting} is not set: its delivery reports and "
                              f"replies (STOP) could not be received safely (set OUTREACH_{setting.upper()} to a "
                              f"long random string, e.g. {SECRET_HINT})")
        return None
    secret: str = value.get_secret_value()
    if not SECRET.match(secret):
        raise ConfigError(f"OUTREACH_{setting.upper()} must be 16 to 128 letters, digits or - _ . ~ (it is part of "
                          f"the URL the provider pushes to); make one with {SECRET_HINT}")
    return secret


def key(provider: str, *parts: object) -> str:
    """A dedupe key of the provider's item, hashed when too long."""
    found = ":".join([provider, *(str(p) for p in parts)])
    return found if len(found) <= MAX_KEY else f"{provider}:sha256:{hashlib.sha256(found.encode()).hexdigest()}"


def items(data: Any, *, single: bool = False) -> list[dict[str, Any]]:
    """The pushed JSON array's objects (``single``: one object is accepted too)."""
    if single and isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise BadPayload("(body)", "expected a JSON array of objects")
    if not data or len(data) > MAX_ITEMS:
        raise BadPayload("(body)", f"expected 1 to {MAX_ITEMS} items, got {len(data)}")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise BadPayload(str(index), f"expected a JSON object, got {type(item).__name__}")
        _storable(item, str(index))
    return data


def _storable(value: Any, where: str) -> None:
    """No NUL anywhere: PostgreSQL refuses it in text and JSON."""
    if isinstance(value, str) and "\x00" in value:
        raise BadPayload(where, "holds a NUL character")
    if isinstance(value, dict):
        for name, inner in value.items():
            _storable(name, where)
            _storable(inner, f"{where}.{name}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _storable(inner, f"{where}.{index}")


def reply_text(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadPayload(f"{where}.{name}", "is missing" if value is None else "expected text")
    if len(value) > MAX_REPLY:
        raise BadPayload(f"{where}.{name}", f"longer than {MAX_REPLY} characters")
    return value


def push_route(path: str, *, provider: str, secret: str, parse: Parse, answer: Answer, engine: Engine,
               clock: Callable[[], datetime], hint: str) -> Route:
    """The POST route of one kind of push, running the whole pipeline."""
    wanted = secret.encode()

    async def endpoint(request: Request) -> Response:
        if not hmac.compare_digest(str(request.path_params.get("secret", "")).encode(), wanted):
            return JSONResponse(answer(404, "not found"), status_code=404)
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        try:
            push = parse(parse_json(body))
        except BadPayload as exc:
            return JSONResponse({**answer(400, f"{exc.field}: {exc.message}"), "hint": hint}, status_code=400)
        try:
            await run_in_threadpool(_act, engine, push, provider, clock())
        except OperationalError:
            return JSONResponse(answer(503, "the database is unavailable; push again later"), status_code=503)
        return JSONResponse(answer(0, "received"))

    return Route(path, endpoint, methods=["POST"])


def provider_routes(settings: Settings, engine: Engine, clock: Callable[[], datetime], *, provider: str,
                    paths: tuple[str, str], parsers: tuple[Parse, Parse], answer: Answer, hint: str) -> list[Route]:
    """A provider's report and reply routes; none without its secret."""
    secret = secret_for(settings, provider)
    if secret is None:
        return []
    return [push_route(path, provider=provider, secret=secret, parse=parse, answer=answer, engine=engine, clock=clock,
                       hint=hint) for path, parse in zip(paths, parsers, strict=True)]


def _act(engine: Engine, push: Push, provider: str, at: datetime) -> None:
    if push.reports:
        with transaction(engine) as session:
            responses.record_delivery_reports(session, push.reports, source=provider, occurred_at=at)
    for reply in push.replies:
        act_on_reply(engine, phone=reply.phone, text=reply.text, source=provider, payload=reply.payload,
                     dedupe_key=reply.dedupe_key, at=at, stop_words=CHINA_STOP_WORDS)

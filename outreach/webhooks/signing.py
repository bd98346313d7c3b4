"""Our own signed JSON webhooks (orders, events): the verify and parse steps.

A delivery carries ``X-Outreach-Timestamp`` (the Unix time of sending) and
``X-Outreach-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>."
+ body`` with the secret. The body is read only up to ``MAX_BODY`` bytes,
before the signature is checked (a longer one is a 413, signed or not); a
bad signature, or a timestamp more than five minutes from the server's
clock (a replay), is a 401; a body that is not UTF-8 JSON of the expected
shape is a 422 naming the field. Nothing is stored in any of these cases.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, ValidationInfo
from starlette.requests import Request
from starlette.responses import JSONResponse

from outreach.clock import to_naive_utc, utcnow
from outreach.errors import PayloadError

SIGNATURE_HEADER = "X-Outreach-Signature"
TIMESTAMP_HEADER = "X-Outreach-Timestamp"
#: A delivery signed longer ago (or ahead) than this is a replay, refused.
REPLAY_WINDOW = timedelta(minutes=5)
SIGN_HINT = ('sign "<X-Outreach-Timestamp>." + the raw body: sha256=<hex HMAC-SHA256 with the webhook secret>, '
             "the timestamp being the Unix time of sending")
#: The largest body read: a longer one is refused before it is read further, signed or not.
MAX_BODY = 1 << 20
#: Text fields hold no control characters (NUL is refused by PostgreSQL; the rest break reports).
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"

#: Nothing we are told about happened before this.
EARLIEST = datetime(2000, 1, 1)

Model = TypeVar("Model", bound=BaseModel)


class Refused(Exception):
    """A delivery answered with ``response`` and not stored."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, at: datetime) -> dict[str, str]:
    """Every header of a signed delivery made at ``at`` (naive UTC)."""
    timestamp = int(at.replace(tzinfo=UTC).timestamp())
    return {SIGNATURE_HEADER: signature(secret, body, timestamp), TIMESTAMP_HEADER: str(timestamp),
            "Content-Type": "application/json"}


def plausible_time(value: datetime, info: ValidationInfo, *, ahead: timedelta, what: str, upto: str) -> datetime:
    """``value`` as naive UTC, if it is from EARLIEST to ``ahead`` of the
    server's clock (the later of the wall clock and ``info.context["now"]``,
    a simulated one in the demo); a ValueError saying so otherwise."""
    try:
        utc = to_naive_utc(value)
    except OverflowError:
        raise ValueError("the date is out of range") from None
    now = max(utcnow(), (info.context or {}).get("now") or EARLIEST)
    if not EARLIEST <= utc <= now + ahead:
        raise ValueError(f"{utc:%Y-%m-%d %H:%M} is not a time {what} can have (from {EARLIEST:%Y} to {upto})")
    return utc


def errors(problems: list[dict[str, Any]], status: int = 422) -> JSONResponse:
    return JSONResponse({"errors": problems}, status_code=status)


def unstorable(exc: PayloadError) -> JSONResponse:
    """A 422 for a well-formed delivery the store refused (an unknown customer)."""
    return errors([{"field": p.field, "message": p.message, "hint": p.hint} for p in exc.problems])


async def verified_body(request: Request, *, secret: str, clock: Callable[[], datetime],
                        too_long_hint: str) -> tuple[bytes, datetime]:
    """The body and the time it was signed (naive UTC); :class:`Refused` otherwise."""
    body = await bounded_body(request)
    if body is None:
        raise Refused(JSONResponse({"error": f"the body is longer than {MAX_BODY:,} bytes", "hint": too_long_hint},
                                   status_code=413))
    given, stamp = request.headers.get(SIGNATURE_HEADER, ""), request.headers.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit() or len(stamp) > 10 or not hmac.compare_digest(given, signature(secret, body, int(stamp))):
        raise Refused(JSONResponse({"error": f"missing or wrong {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}",
                                    "hint": SIGN_HINT}, status_code=401))
    signed_at = datetime.fromtimestamp(int(stamp), UTC).replace(tzinfo=None)
    if abs(signed_at - clock()) > REPLAY_WINDOW:
        raise Refused(JSONResponse(
            {"error": f"{TIMESTAMP_HEADER} {signed_at:%Y-%m-%d %H:%M:%S} UTC is more than "
                      f"{REPLAY_WINDOW.seconds // 60} minutes from now: a replayed delivery",
             "hint": "sign each delivery when it is sent; check the sending server's clock"}, status_code=401))
    return body, signed_at


def parsed(model: type[Model], body: bytes, *, context: dict[str, Any]) -> Model:
    """The body as ``model``; :class:`Refused` (422, naming the field) otherwise."""
    try:
        return model.model_validate(json.loads(body.decode("utf-8"), parse_constant=_no_constant), context=context)
    except ValidationError as exc:  # before ValueError, which it is
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                    for e in exc.errors()]
    except UnicodeDecodeError as exc:
        problems = [{"field": "(body)", "message": f"not UTF-8 text (byte {exc.start})"}]
    except ValueError as exc:  # not JSON, NaN/Infinity, a number of thousands of digits
        problems = [{"field": "(body)", "message": f"not JSON: {exc}"}]
    except RecursionError:
        problems = [{"field": "(body)", "message": "the JSON is nested too deeply"}]
    raise Refused(errors(problems))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def bounded_body(request: Request) -> bytes | None:
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

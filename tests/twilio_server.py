"""A real HTTP server speaking Twilio's Messages API, for tests.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` behaves as Twilio
documents it (https://www.twilio.com/docs/messaging/api/message-resource):
HTTP basic auth with the account SID and auth token, form-encoded ``To``,
``From`` / ``MessagingServiceSid``, ``Body`` and ``StatusCallback``; ``201``
with a Message resource on success, an error JSON
``{"code", "message", "more_info", "status"}`` otherwise.

Failures can be injected: numbers Twilio rejects as invalid (21211),
unsubscribed (21610) or not mobile (21614), and "the next N requests answer
503" (or 429). Every request is recorded so tests can assert what was sent.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from provider_server import serving

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
#: Twilio's error catalogue entries this server produces.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20503: (503, "Service is unavailable. Please try again"),
    21211: (400, "Invalid 'To' Phone Number: {to}"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
}
_STATUS_ERROR = {503: 20503, 429: 20429}


@dataclass
class Request:
    path: str
    username: str | None
    form: dict[str, str]


@dataclass
class TwilioState:
    account_sid: str
    auth_token: str
    invalid: set[str] = field(default_factory=set)  # 21211
    unsubscribed: set[str] = field(default_factory=set)  # 21610
    landlines: set[str] = field(default_factory=set)  # 21614
    requests: list[Request] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, *, status: int = 503, retry_after: str | None = None) -> None:
        """The next ``count`` requests answer ``status`` (503 or 429), with a
        ``Retry-After`` header when given (seconds or an HTTP date)."""
        with self.lock:
            self._failures.extend([(status, retry_after)] * count)

    def take_failure(self) -> tuple[int, str | None] | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None


def _segments(body: str) -> int:
    """Twilio's count, roughly: ASCII as GSM-7, anything else as UCS-2."""
    if body.isascii():
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], *, retry_after: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, *, retry_after: str | None = None, **values: str) -> None:
        status, message = ERRORS[code]
        self._reply(status, {
            "code": code,
            "message": message.format(**values),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }, retry_after=retry_after)

    def _username(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        state = self.server.state
        ok = secrets.compare_digest(f"{user}:{password}", f"{state.account_sid}:{state.auth_token}")
        return user if ok else None

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        username = self._username()
        state.requests.append(Request(path=self.path, username=username, form=form))
        match = _MESSAGES.match(self.path)
        if username is None or (match and match["sid"] != username):
            return self._error(20003)
        if not match:
            return self._error(20404, path=self.path)
        failure = state.take_failure()
        if failure is not None:
            return self._error(_STATUS_ERROR[failure[0]], retry_after=failure[1])
        to, sender, body = form.get("To"), form.get("From") or form.get("MessagingServiceSid"), form.get("Body")
        if not to:
            return self._error(21604)
        if not sender:
            return self._error(21603)
        if not body:
            return self._error(21602)
        if not _E164.match(to) or to in state.invalid:
            return self._error(21211, to=to)
        if to in state.unsubscribed:
            return self._error(21610)
        if to in state.landlines:
            return self._error(21614)
        self._reply(201, self._created(match["sid"], form))

    def _created(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}"
        resource = {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(_segments(form["Body"])),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if "From" in form else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }
        self.server.state.created.append(resource)
        return resource


@dataclass
class TwilioServer:
    url: str
    state: TwilioState

    @property
    def requests(self) -> list[Request]:
        return self.state.requests


@contextmanager
def twilio_server(*, account_sid: str, auth_token: str) -> Iterator[TwilioServer]:
    """Serve the fake Twilio API on 127.0.0.1 for the ``with`` block."""
    state = TwilioState(account_sid=account_sid, auth_token=auth_token)
    with serving(state, _Handler, "fake-twilio") as server:  # type: ignore[arg-type]
        yield TwilioServer(url=server.url, state=state)

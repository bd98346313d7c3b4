"""SMS through Twilio's Programmable Messaging API.

``POST {twilio_base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with
HTTP basic auth (account SID, auth token) and the form fields ``To``,
``From``, ``Body`` and ``StatusCallback`` (our webhook, which turns Twilio's
delivery receipts into tracking events). A ``201`` answer carries the message
``sid`` ("SM…"), which becomes the provider id.

How a failure is classified:

* an error JSON with a 4xx status (21211 invalid 'To', 21610 recipient
  replied STOP, 21614 not a mobile number, 20003 bad credentials…) →
  PermanentChannelError naming Twilio's code and message;
* 429 (too many requests), 5xx, timeouts and network errors → ChannelError.

Twilio's Messages API has no idempotency key: a request that timed out after
Twilio accepted it may be sent again by a retry. The send-once state machine
in :mod:`outreach.sending.deliver` keeps that window to a crash or a timeout.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from outreach.channels.base import Envelope
from outreach.config import Settings
from outreach.errors import ChannelError, PermanentChannelError, ProviderUnavailable

#: Seconds to wait for Twilio to connect and answer one request.
REQUEST_TIMEOUT = 15.0
#: Path of the Messages resource, below twilio_base_url.
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
#: Path of our delivery-receipt webhook, below public_url.
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
#: HTTP statuses worth retrying besides 5xx: rate limited, request timeout.
RETRYABLE_STATUS = frozenset({408, 429})
#: Statuses that say the whole service is down or throttling every request:
#: the rest of the batch waits too.
UNAVAILABLE_STATUS = frozenset({429, 502, 503, 504})
#: A "From" of this shape is a Messaging Service, not a phone number.
MESSAGING_SERVICE_PREFIX = "MG"
#: Twilio's "Attempt to send to unsubscribed recipient": the number replied STOP.
OPTED_OUT = 21610
#: What a marketer can do about the Twilio error codes seen most often.
ERROR_HINTS = {
    20003: "check twilio_account_sid and twilio_auth_token",
    21211: "the customer's phone number is not valid; fix it in the customer data (E.164, e.g. +14155552671)",
    21408: "enable this country in the Twilio console (Messaging → Geo permissions)",
    21606: "twilio_from is not an SMS-capable number of this account",
    21610: "the recipient replied STOP to this sender; they must text START before you can message them",
    21612: "Twilio cannot route to this number from twilio_from",
    21614: "the number is not a mobile number and cannot receive SMS",
}

_clients: dict[tuple[str, str, str], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(base_url: str, sid: str, token: str) -> httpx.Client:
    """One pooled, thread-safe HTTP client per Twilio account and endpoint."""
    key = (base_url, sid, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(
                base_url=base_url,
                auth=httpx.BasicAuth(sid, token),
                timeout=REQUEST_TIMEOUT,
                headers={"Accept": "application/json", "User-Agent": "outreach"},
            )
            _clients[key] = client
        return client


class TwilioBackend:
    """Deliver SMS with Twilio; provider id = the message SID."""

    name = "twilio"
    channel = "sms"

    def __init__(
        self, *, account_sid: str, auth_token: str, from_number: str, base_url: str, status_callback: str
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        self.status_callback = status_callback
        self.client = _client(base_url.rstrip("/"), account_sid, auth_token)
        self.url = MESSAGES_PATH.format(sid=account_sid)

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioBackend:
        return cls(
            account_sid=settings.require("twilio_account_sid"),
            auth_token=settings.require("twilio_auth_token"),
            from_number=settings.require("twilio_from"),
            base_url=settings.require("twilio_base_url"),
            status_callback=settings.public_url.rstrip("/") + STATUS_CALLBACK_PATH,
        )

    def form(self, envelope: Envelope) -> dict[str, str]:
        sender = envelope.from_address or self.from_number
        form = {"To": envelope.to, "Body": envelope.text, "StatusCallback": self.status_callback}
        if sender.startswith(MESSAGING_SERVICE_PREFIX):
            form["MessagingServiceSid"] = sender
        else:
            form["From"] = sender
        return form

    def deliver(self, envelope: Envelope) -> str:
        where = f"Twilio, message {envelope.message_id} to {envelope.to}"
        try:
            response = self.client.post(self.url, data=self.form(envelope))
        except httpx.TimeoutException:
            raise ProviderUnavailable(f"{where}: no answer within {REQUEST_TIMEOUT:g} s") from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            return _sid_of(response, where)
        raise _error_of(response, where)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _sid_of(response: httpx.Response, where: str) -> str:
    body = _json(response)
    sid = body.get("sid")
    if body.get("status") in ("failed", "undelivered"):
        raise PermanentChannelError(
            f"{where}: Twilio answered status '{body['status']}' "
            f"(error {body.get('error_code')}: {body.get('error_message')})"
        )
    if not isinstance(sid, str) or not sid:
        # Twilio may have accepted it: retrying could send a second copy.
        raise PermanentChannelError(
            f"{where}: HTTP {response.status_code} without a message sid "
            f"({response.text[:200]!r}); not retried, it may have been sent"
        )
    return sid


def _error_of(response: httpx.Response, where: str) -> ChannelError:
    body = _json(response)
    status = response.status_code
    code = body.get("code")
    message = body.get("message") or response.reason_phrase or response.text[:200]
    text = f"{where}: HTTP {status}"
    if code is not None:
        text += f", Twilio error {code}: {message}"
    else:
        text += f": {message}"
    if body.get("more_info"):
        text += f" ({body['more_info']})"
    hint = ERROR_HINTS.get(code) if isinstance(code, int) else None
    if hint:
        text += f" (hint: {hint})"
    retry_after = _retry_after(response)
    if status in UNAVAILABLE_STATUS:
        return ProviderUnavailable(text, retry_after=retry_after)
    if status >= 500 or status in RETRYABLE_STATUS:
        return ChannelError(text, retry_after=retry_after)
    return PermanentChannelError(text, opted_out=code == OPTED_OUT)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the ``Retry-After`` header asks to wait (a number or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None

"""Email through an SMTP server (smtplib): one connection per message.

Settings: ``smtp_host``, ``smtp_port``, ``smtp_username`` / ``smtp_password``
(login only when a username is set), ``smtp_starttls`` (upgrade a plain
connection), ``smtp_ssl`` (TLS from the first byte, usually port 465),
``smtp_timeout`` and ``from_address``.

How a failure is classified:

* no connection, a timeout, a dropped connection, a 4xx reply → ChannelError
  (the worker retries later);
* a 5xx reply (550 recipient refused, 535 bad login, 552 too big…) →
  PermanentChannelError (retrying cannot help).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass

from outreach.channels.base import Envelope
from outreach.channels.mime import build_email, envelope_recipient, envelope_sender
from outreach.config import Settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError

#: SMTP reply codes from this value up are permanent failures (RFC 5321 §4.2.1).
PERMANENT_REPLY = 500


@dataclass(frozen=True, kw_only=True)
class SmtpOptions:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    ssl: bool
    timeout: float


class SmtpBackend:
    """Deliver email through an SMTP relay; provider id = Message-ID."""

    name = "smtp"
    channel = "email"

    def __init__(self, *, options: SmtpOptions, from_address: str) -> None:
        self.options = options
        self.from_address = from_address

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpBackend:
        if settings.smtp_ssl and settings.smtp_starttls:
            raise ConfigError(
                "settings 'smtp_ssl' and 'smtp_starttls' exclude each other: use smtp_ssl "
                "for TLS from the start (port 465) or smtp_starttls to upgrade (port 587)"
            )
        username = settings.smtp_username or None
        password = settings.require("smtp_password") if username else None
        options = SmtpOptions(
            host=settings.require("smtp_host"),
            port=settings.smtp_port,
            username=username,
            password=password,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
        )
        return cls(options=options, from_address=settings.require("from_address"))

    @property
    def server(self) -> str:
        return f"SMTP server {self.options.host}:{self.options.port}"

    def deliver(self, envelope: Envelope) -> str:
        message = build_email(envelope, from_address=self.from_address)
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc, envelope) from None
        try:
            if self.options.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.options.username:
                client.login(self.options.username, self.options.password or "")
            client.send_message(
                message, from_addr=envelope_sender(message), to_addrs=[envelope_recipient(message)]
            )
        except (smtplib.SMTPException, OSError) as exc:
            client.close()
            raise self._classify(exc, envelope) from None
        _quit_quietly(client)
        return str(message["Message-ID"])

    def _connect(self) -> smtplib.SMTP:
        o = self.options
        if o.ssl:
            return smtplib.SMTP_SSL(
                o.host, o.port, timeout=o.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(o.host, o.port, timeout=o.timeout)

    def _classify(self, exc: BaseException, envelope: Envelope) -> ChannelError:
        """Turn what smtplib raised into a retryable or permanent error."""
        to = envelope.to
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            return _by_code(code, f"{self.server} refused recipient {to}: {code} {_text(reply)}")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return _by_code(
                exc.smtp_code,
                f"{self.server} rejected the login of '{self.options.username}': "
                f"{exc.smtp_code} {_text(exc.smtp_error)} (check smtp_username and smtp_password)",
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return _by_code(
                exc.smtp_code,
                f"{self.server} refused message {envelope.message_id} to {to}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentChannelError(
                f"{self.server} does not support what this message needs: {exc} "
                "(STARTTLS: turn off smtp_starttls or use another server; SMTPUTF8: the "
                "address has non-ASCII characters the server cannot take)"
            )
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return ChannelError(f"{self.server} did not answer within {self.options.timeout:g} s")
        return ChannelError(f"{self.server} could not take message {envelope.message_id}: {exc!r}")


def _by_code(code: int, text: str) -> ChannelError:
    if code >= PERMANENT_REPLY:
        return PermanentChannelError(text)
    return ChannelError(text)


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def _quit_quietly(client: smtplib.SMTP) -> None:
    """Say goodbye; the message is already accepted, so a failed QUIT must not
    turn into a retry (and a second copy)."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()

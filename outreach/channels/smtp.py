"""Email through an SMTP server (smtplib): one open connection per worker
thread and server, reused for every message it sends.

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

import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass

from outreach.channels.base import Envelope
from outreach.channels.mime import build
from outreach.config import Settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, ProviderUnavailable

#: SMTP reply codes from this value up are permanent failures (RFC 5321 §4.2.1).
PERMANENT_REPLY = 500
#: A connection idle longer than this is opened anew (servers drop idle ones).
IDLE_REUSE_S = 30.0
_local = threading.local()
#: Dot-stuffing (RFC 5321 §4.5.2): a line that starts with "." gets another.
_LEADING_DOT = re.compile(rb"^\.", re.M)


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
        built = build(envelope, from_address=self.from_address)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if not (built.sender + built.recipient).isascii() else []
        for attempt in range(2):
            client, reused = self._connection()
            try:
                _transaction(client, built.sender, built.recipient, built.wire, options)
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection before taking it: once more, anew
                raise self._classify(exc, envelope) from None
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                # The server answered (and smtplib reset the transaction): the connection stays.
                raise self._classify(exc, envelope) from None
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise self._classify(exc, envelope) from None
            self._touch(client)
            return built.message_id
        raise AssertionError("unreachable")  # pragma: no cover

    # -------------------------------------------------------------- the pool
    def _key(self) -> tuple[object, ...]:
        o = self.options
        return (o.host, o.port, o.username, o.password, o.starttls, o.ssl)

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's open connection to the server (opened and logged in
        when there is none, or when it sat idle too long); whether it was reused."""
        pool: dict[tuple[object, ...], tuple[smtplib.SMTP, float]] = _pool()
        found = pool.get(self._key())
        if found is not None:
            client, last_used = found
            if time.monotonic() - last_used < IDLE_REUSE_S:
                return client, True
            self._drop()
        try:
            client = self._connect()
            if self.options.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.options.username:
                client.login(self.options.username, self.options.password or "")
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc, None) from None
        pool[self._key()] = (client, time.monotonic())
        return client, False

    def _touch(self, client: smtplib.SMTP) -> None:
        _pool()[self._key()] = (client, time.monotonic())

    def _drop(self) -> None:
        found = _pool().pop(self._key(), None)
        if found is not None:
            _quit_quietly(found[0])

    def _connect(self) -> smtplib.SMTP:
        o = self.options
        if o.ssl:
            return smtplib.SMTP_SSL(
                o.host, o.port, timeout=o.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(o.host, o.port, timeout=o.timeout)

    def _classify(self, exc: BaseException, envelope: Envelope | None) -> ChannelError:
        """Turn what smtplib raised into a retryable or permanent error."""
        to = envelope.to if envelope else "?"
        which = envelope.message_id if envelope else "?"
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
                f"{self.server} refused message {which} to {to}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentChannelError(
                f"{self.server} does not support what this message needs: {exc} "
                "(STARTTLS: turn off smtp_starttls or use another server; SMTPUTF8: the "
                "address has non-ASCII characters the server cannot take)"
            )
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return ProviderUnavailable(f"{self.server} did not answer within {self.options.timeout:g} s")
        if isinstance(exc, (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
            return ProviderUnavailable(f"{self.server} cannot be reached: {exc!r}")
        return ChannelError(f"{self.server} could not take message {which}: {exc!r}")


def _by_code(code: int, text: str) -> ChannelError:
    if code >= PERMANENT_REPLY:
        return PermanentChannelError(text)
    return ChannelError(text)


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def _transaction(client: smtplib.SMTP, sender: str, recipient: str, data: bytes, options: list[str]) -> None:
    """One message: MAIL, RCPT, DATA — what ``smtplib.SMTP.sendmail`` does, for
    addresses ``mime.build`` has already checked, so without parsing them
    again per message. A refusal resets the transaction: the connection stays usable."""
    client.ehlo_or_helo_if_needed()
    extra = " " + " ".join(options) if options else ""
    if client.has_extn("pipelining"):
        _pipelined(client, sender, recipient, data, extra)
        return
    code, reply = client.docmd("mail", f"FROM:<{sender}>{extra}")
    if code != 250:
        _reset(client, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.docmd("rcpt", f"TO:<{recipient}>")
    if code not in (250, 251):
        _reset(client, code)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.data(data)
    if code != 250:
        _reset(client, code)
        raise smtplib.SMTPDataError(code, reply)


def _pipelined(client: smtplib.SMTP, sender: str, recipient: str, data: bytes, extra: str) -> None:
    """The same transaction with PIPELINING (RFC 2920), as servers that offer
    it allow: MAIL, RCPT and DATA in one write, their three replies read
    together, then the message — two round trips instead of four."""
    client.send(f"MAIL FROM:<{sender}>{extra}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
    (mail, mail_reply), (rcpt, rcpt_reply), (go, go_reply) = client.getreply(), client.getreply(), client.getreply()
    if go == 354 and (mail != 250 or rcpt not in (250, 251)):
        client.send(b".\r\n")  # DATA was accepted although an envelope command was not: end it empty
        client.getreply()
    if mail != 250:
        _reset(client, mail)
        raise smtplib.SMTPSenderRefused(mail, mail_reply, sender)
    if rcpt not in (250, 251):
        _reset(client, rcpt)
        raise smtplib.SMTPRecipientsRefused({recipient: (rcpt, rcpt_reply)})
    if go != 354:
        _reset(client, go)
        raise smtplib.SMTPDataError(go, go_reply)
    body = _LEADING_DOT.sub(b"..", data)
    client.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, reply = client.getreply()
    if code != 250:
        _reset(client, code)
        raise smtplib.SMTPDataError(code, reply)


def _reset(client: smtplib.SMTP, code: int) -> None:
    if code == 421:  # the server is closing the connection
        raise smtplib.SMTPServerDisconnected("the server closed the connection (421)")
    try:
        client.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _pool() -> dict[tuple[object, ...], tuple[smtplib.SMTP, float]]:
    """This thread's connections, by server and login (smtplib is not thread-safe)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def close_connections() -> None:
    """Say goodbye to this thread's servers (a worker thread that stops)."""
    for client, _ in _pool().values():
        _quit_quietly(client)
    _pool().clear()


def _quit_quietly(client: smtplib.SMTP) -> None:
    """Say goodbye; the messages are already accepted, so a failed QUIT must
    not turn into a retry (and a second copy)."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()

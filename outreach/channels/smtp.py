"""Email through an SMTP server: one open connection per worker thread and
server, reused for every message it sends (smtplib connects, says EHLO,
upgrades to TLS and logs in; a batch then goes out pipelined when the
server allows, :mod:`outreach.channels.smtpwire`).

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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from outreach.channels.base import Envelope, Outcome, Settle, Wanted
from outreach.channels.mime import Built, build
from outreach.channels.smtpwire import Session
from outreach.config import Settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, ProviderUnavailable

#: SMTP reply codes from this value up are permanent failures (RFC 5321 §4.2.1).
PERMANENT_REPLY = 500
#: A connection idle longer than this is opened anew (servers drop idle ones).
IDLE_REUSE_S = 30.0
_local = threading.local()


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
        outcomes: list[Outcome] = []
        self.deliver_many([envelope], wanted=lambda index: True, settle=lambda index, outcome: outcomes.append(outcome))
        [outcome] = outcomes
        if isinstance(outcome, ChannelError):
            raise outcome
        return outcome

    def deliver_many(self, envelopes: Sequence[Envelope], *, wanted: Wanted, settle: Settle) -> None:
        """The batch over this thread's connection, pipelined when the server
        allows (:meth:`Session.pipeline`). A connection that breaks settles
        what was sent and not answered with a retryable error — the message
        whose content had gone may have arrived — and the rest untried."""
        pending: dict[int, tuple[Built, list[str]]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                built = build(envelope, from_address=self.from_address)
            except ChannelError as exc:
                settle(index, exc)
                continue
            ascii_only = (built.sender + built.recipient).isascii()
            pending[index] = (built, [] if ascii_only else ["SMTPUTF8", "BODY=8BITMIME"])

        def answered(index: int, error: BaseException | None) -> None:
            built, _ = pending.pop(index)
            settle(index, built.message_id if error is None else self._classify(error, envelopes[index]))

        if not pending:
            return
        broken = self._pipeline(pending, wanted=wanted, settle=answered)
        if broken is None:
            return
        error, offered = broken
        for index in list(pending):
            # What was offered and not answered failed with the connection (its
            # content may have arrived: retried, reported); the rest wait with it
            # when the server is unavailable, else go back untried.
            if index in offered or isinstance(error, ProviderUnavailable):
                del pending[index]
                settle(index, error)

    def _pipeline(self, pending: dict[int, tuple[Built, list[str]]], *, wanted: Wanted,
                  settle: Callable[[int, BaseException | None], None]) -> tuple[ChannelError, set[int]] | None:
        """Run the batch on this thread's connection; None when it held, else
        the connection's error and the indexes offered on it."""
        for attempt in range(2):
            try:
                session, reused = self._session()
            except ChannelError as exc:  # no connection or no login: what each message would meet
                return exc, set(pending)
            try:
                session.pipeline(pending, wanted=wanted, settle=settle)
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                if (reused and attempt == 0 and not session.content_sent
                        and isinstance(exc, smtplib.SMTPServerDisconnected)):
                    continue  # the server closed an idle connection before taking anything: once more, anew
                return self._classify(exc, None), session.offered
            session.last_used = time.monotonic()
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    # -------------------------------------------------------------- the pool
    def _key(self) -> tuple[object, ...]:
        o = self.options
        return (o.host, o.port, o.username, o.password, o.starttls, o.ssl)

    def _session(self) -> tuple[Session, bool]:
        """This thread's open connection to the server (opened and logged in
        when there is none, or when it sat idle too long); whether it was reused."""
        pool = _pool()
        found = pool.get(self._key())
        if found is not None:
            if time.monotonic() - found.last_used < IDLE_REUSE_S:
                return found, True
            self._drop()
        try:
            client = self._connect()
            if self.options.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.options.username:
                client.login(self.options.username, self.options.password or "")
            client.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError) as exc:
            raise self._classify(exc, None) from None
        session = pool[self._key()] = Session(client)
        return session, False

    def _drop(self) -> None:
        found = _pool().pop(self._key(), None)
        if found is not None:
            _quit_quietly(found.client)

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


def _pool() -> dict[tuple[object, ...], Session]:
    """This thread's connections, by server and login (a connection is not thread-safe)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def close_connections() -> None:
    """Say goodbye to this thread's servers (a worker thread that stops)."""
    for session in _pool().values():
        _quit_quietly(session.client)
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

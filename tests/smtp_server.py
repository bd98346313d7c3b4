"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a port of its own.

The server records every message it accepts (envelope and raw bytes), can
refuse chosen recipients with any reply (``550 5.1.1 …`` or ``450 4.2.0 …``)
and can require a login.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LOOPBACK = "127.0.0.1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = 0.0  # time.monotonic() when the server accepted it

    def parsed(self) -> EmailMessage:
        """The message as a mailbox stores it (SMTP's CRLF line ends made local)."""
        local = self.data.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(local, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class SmtpSink:
    """The handler: what the server received and how it answers."""

    refuse: dict[str, str] = field(default_factory=dict)  # recipient → reply
    received: list[Received] = field(default_factory=list)
    pipelining: bool = False  # offer PIPELINING (RFC 2920), as Postfix and most relays do
    sessions: int = 0  # connections that said EHLO
    delay: float = 0.0  # seconds each message takes to be accepted (a slow relay)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions += 1
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content or envelope.content
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(data), time.monotonic()))
        return "250 Message accepted for delivery"


class LoopbackController(Controller):
    """aiosmtpd's Controller on a socket bound before start, so the port is
    ours (no "find a free port, hope nobody takes it" race)."""

    def __init__(self, handler: SmtpSink, *, bind_port: int = 0, **kwargs: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((LOOPBACK, bind_port))
        port = self._socket.getsockname()[1]
        super().__init__(handler, hostname=LOOPBACK, port=port, **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._socket, ssl=self.ssl_context)


@dataclass
class SmtpServer:
    host: str
    port: int
    sink: SmtpSink

    @property
    def received(self) -> list[Received]:
        return self.sink.received


def _authenticator(users: dict[str, str]) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


@contextmanager
def smtp_server(
    *, refuse: dict[str, str] | None = None, users: dict[str, str] | None = None, port: int = 0,
    sink: SmtpSink | None = None, pipelining: bool = False,
) -> Iterator[SmtpServer]:
    """Run an SMTP server for the duration of the ``with`` block.

    ``users`` (login → password) makes the server require AUTH (over plain
    TCP, as a local relay would). ``port`` and ``sink`` let a test bring a
    server back on the port of one it stopped, with what that one received.
    ``pipelining`` makes it offer PIPELINING, so clients send MAIL, RCPT and
    DATA in one write (aiosmtpd reads and answers them in order).
    """
    sink = sink or SmtpSink(refuse=dict(refuse or {}), pipelining=pipelining)
    options: dict[str, Any] = {}
    if users is not None:
        options.update(
            authenticator=_authenticator(users), auth_required=True, auth_require_tls=False
        )
    controller = LoopbackController(sink, bind_port=port, loop=asyncio.new_event_loop(), **options)
    controller.start()
    try:
        yield SmtpServer(host=LOOPBACK, port=controller.port, sink=sink)
    finally:
        controller.stop()

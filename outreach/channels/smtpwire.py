"""SMTP on an open connection: each message's commands written and their
replies read straight off the socket, a batch pipelined (RFC 2920).

smtplib connects, says EHLO, upgrades to TLS and logs in
(:mod:`outreach.channels.smtp`); after that, its per-line reading and
parsing cost about 0.1 ms of CPU a message, as much as rendering it, and
one ``sendmail`` waits for two round trips. A :class:`Session` pipelines a
batch in one round trip a message, and raises what smtplib would raise, so
the backend classifies failures the same way.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable

from outreach.channels.base import Wanted
from outreach.channels.mime import Built

#: The longest reply line read (smtplib's limit).
MAX_REPLY_LINE = 8192
#: Bytes asked of the socket at a time.
RECEIVE_BYTES = 65536


class Session:
    """One open connection, past its greeting, TLS and login (smtplib did
    those); not thread-safe (the backend keeps one per thread)."""

    def __init__(self, client: smtplib.SMTP) -> None:
        self.client = client
        self.pipelining = client.has_extn("pipelining")
        self.last_used = time.monotonic()
        self._buffer = b""
        #: Of the current pipeline: the indexes offered, and whether any content was written.
        self.offered: set[int] = set()
        self.content_sent = False

    def transaction(self, sender: str, recipient: str, data: bytes, options: list[str]) -> None:  # no pipelining
        """One message: MAIL, RCPT, DATA — what ``smtplib.SMTP.sendmail`` does,
        for addresses ``mime.build`` has already checked. With PIPELINING (RFC
        2920) the three commands go in one write and their replies are read
        together: two round trips instead of four. A refusal resets the
        transaction, so the connection stays usable."""
        mail, rcpt = _commands(sender, recipient, options)
        self._send(mail)
        code, reply = self._reply()
        rcpt_code, rcpt_reply = self._reply_to(rcpt) if code == 250 else (0, b"")
        go, go_reply = self._reply_to(b"DATA\r\n") if rcpt_code in (250, 251) else (0, b"")
        if code != 250:
            self._reset(code)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        if rcpt_code not in (250, 251):
            self._reset(rcpt_code)
            raise smtplib.SMTPRecipientsRefused({recipient: (rcpt_code, rcpt_reply)})
        if go != 354:
            self._reset(go)
            raise smtplib.SMTPDataError(go, go_reply)
        code, reply = self._reply_to(_stuffed(data))
        if code != 250:
            self._reset(code)
            raise smtplib.SMTPDataError(code, reply)

    def pipeline(self, items: dict[int, tuple[Built, list[str]]], *, wanted: Wanted,
                 settle: Callable[[int, BaseException | None], None]) -> None:
        """Send ``items`` (index → message, MAIL options) in order, one round
        trip each with PIPELINING: a message's content and ".", then the next
        one's MAIL, RCPT and DATA, in one write (RFC 2920 §3.1 lets content
        start a group and DATA end it); their replies read together. Without
        PIPELINING, one :meth:`transaction` each. ``settle(index, error)``
        as each is answered (error None: taken; an SMTP reply error: refused).
        A broken connection raises, the unanswered left unsettled."""
        self.offered.clear()
        self.content_sent = False
        if not self.pipelining:
            for index, (built, options) in list(items.items()):
                if not wanted(index):
                    continue
                self.offered.add(index)
                self.content_sent = True  # (may have been: what a broken connection leaves in doubt)
                try:
                    self.transaction(built.sender, built.recipient, built.wire, options)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                    settle(index, exc)
                    continue
                settle(index, None)
            return
        queue = list(items.items())
        tail, tail_for, reset = b"", None, False
        while True:
            current = None
            while queue:
                index, (built, options) = queue.pop(0)
                if wanted(index):
                    current = index, built, options
                    break
            out = tail + (b"RSET\r\n" if reset else b"")
            if current is not None:
                out += _envelope(current[1], current[2])
                self.offered.add(current[0])
            if not out:
                return
            self._send(out)
            self.content_sent = self.content_sent or tail_for is not None
            if tail_for is not None:
                code, reply = self._reply()
                if tail_for >= 0:
                    settle(tail_for, None if code == 250 else smtplib.SMTPDataError(code, reply))
                if code == 421:
                    raise smtplib.SMTPServerDisconnected("the server closed the connection (421)")
            if reset and self._reply()[0] == 421:
                raise smtplib.SMTPServerDisconnected("the server closed the connection (421)")
            tail, tail_for, reset = b"", None, False
            if current is None:
                return
            index, built, _ = current
            (mail, mail_reply), (rcpt, rcpt_reply), (go, go_reply) = self._reply(), self._reply(), self._reply()
            if mail == 250 and rcpt in (250, 251) and go == 354:
                tail, tail_for = _stuffed(built.wire), index
                continue
            if go == 354:  # DATA was accepted although an envelope command was not: end it empty
                tail, tail_for = b".\r\n", -1
            if 421 in (mail, rcpt, go):
                raise smtplib.SMTPServerDisconnected("the server closed the connection (421)")
            reset = True
            if mail != 250:
                settle(index, smtplib.SMTPSenderRefused(mail, mail_reply, built.sender))
            elif rcpt not in (250, 251):
                settle(index, smtplib.SMTPRecipientsRefused({built.recipient: (rcpt, rcpt_reply)}))
            else:
                settle(index, smtplib.SMTPDataError(go, go_reply))

    def _send(self, data: bytes) -> None:
        sock = self.client.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("the connection is closed")
        sock.sendall(data)

    def _reply_to(self, command: bytes) -> tuple[int, bytes]:
        self._send(command)
        return self._reply()

    def _reply(self) -> tuple[int, bytes]:
        """The next reply: its code and text (the lines of a multiline reply joined)."""
        lines: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            while end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    raise smtplib.SMTPResponseException(500, b"the server's reply line is too long")
                sock = self.client.sock
                chunk = sock.recv(RECEIVE_BYTES) if sock is not None else b""
                if not chunk:
                    raise smtplib.SMTPServerDisconnected("the server closed the connection")
                self._buffer += chunk
                end = self._buffer.find(b"\n")
            line, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1:]
            if not line[:3].isdigit():
                raise smtplib.SMTPServerDisconnected(f"the server's reply is not SMTP: {line[:80]!r}")
            lines.append(line[4:].strip())
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def _reset(self, code: int) -> None:
        if code == 421:  # the server is closing the connection
            raise smtplib.SMTPServerDisconnected("the server closed the connection (421)")
        try:
            self._reply_to(b"RSET\r\n")
        except smtplib.SMTPServerDisconnected:
            pass


def _commands(sender: str, recipient: str, options: list[str]) -> tuple[bytes, bytes]:
    """MAIL FROM and RCPT TO (UTF-8 with the SMTPUTF8 option)."""
    extra = " " + " ".join(options) if options else ""
    encoding = "utf-8" if options else "ascii"
    return f"MAIL FROM:<{sender}>{extra}\r\n".encode(encoding), f"RCPT TO:<{recipient}>\r\n".encode(encoding)


def _envelope(built: Built, options: list[str]) -> bytes:
    mail, rcpt = _commands(built.sender, built.recipient, options)
    return mail + rcpt + b"DATA\r\n"


def _stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: dot-stuffed (RFC 5321 §4.5.2: a line
    that starts with "." gets another), ended by a line with a single dot."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")

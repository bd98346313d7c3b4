"""MIME messages for email backends: headers folded so every client reads
them, a Message-ID stable per message, nothing a template could inject."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.headerregistry import Address, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

from outreach.channels.base import Envelope
from outreach.errors import ConfigError, PermanentChannelError

#: Headers build_email writes itself; an envelope may not override them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding",
    )
)
#: RFC 5322 limit on a header line, CRLF excluded.
MAX_HEADER_LINE = 998
#: What may stand left of the "@" in a Message-ID (RFC 5322 dot-atom text).
_MSGID_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


class MailPolicy(EmailPolicy):
    """``email.policy.default`` with two fixes to how headers are folded.

    * An ASCII value with a word too long to fold (a List-Unsubscribe URL)
      stays as written instead of becoming an RFC 2047 encoded-word, which
      mail clients would not read as a URL.
    * A non-ASCII unstructured value (a Chinese subject) is encoded as
      base64 encoded-words that carry their own spaces: the standard folder
      can put a space *between* two encoded-words, where RFC 2047 says it
      vanishes ("到期 — 本周" would arrive as "到期— 本周").
    """

    def fold(self, name: str, value: str) -> str:
        return self._fold_fixed(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        line = self._fold_fixed(name, value)
        return line.encode("ascii") if line else super().fold_binary(name, value)

    def _fold_fixed(self, name: str, value: str) -> str | None:
        text = str(value)
        if "\r" in text or "\n" in text or "=?" in text:
            return None
        if text.isascii():
            limit = self.max_line_length or MAX_HEADER_LINE
            if len(name) + 2 + len(text) <= limit:
                return None  # fits: nothing to fold
            if any(len(name) + 2 + len(word) > limit for word in text.split()):
                if len(name) + 2 + len(text) <= MAX_HEADER_LINE:
                    return f"{name}: {text}{self.linesep}"
            return None
        if isinstance(value, UnstructuredHeader) and text.isprintable():
            words = _encoded_words(text)
            return f"{name}: " + f"{self.linesep} ".join(words) + self.linesep
        return None


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 base64 encoded-words of whole characters."""
    words: list[str] = []
    chunk = b""
    for ch in text:
        data = ch.encode("utf-8")
        if chunk and len(chunk) + len(data) > _EW_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = b""
        chunk += data
    words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return words


#: UTF-8 bytes per encoded-word: 52 base64 characters, so a header line
#: ("Subject: " + one encoded-word) stays under 78 characters.
_EW_BYTES = 39
#: The policy every message Outreach builds is written with: text parts are
#: quoted-printable or base64 (whichever is shorter), never raw 8-bit, so any
#: SMTP server takes them.
MAIL_POLICY = MailPolicy(cte_type="7bit")


def _sender_domain(sender: str) -> str:
    """The domain of ``sender`` ("Shop <hello@shop.example>" → "shop.example")."""
    message = EmailMessage()
    try:
        message["From"] = sender
        addresses = message["From"].addresses
    except (ValueError, TypeError, IndexError):
        addresses = ()
    domain = addresses[0].domain if len(addresses) == 1 else ""
    if not domain:
        raise ConfigError(
            f"from address '{sender}' is not an email address: set OUTREACH_FROM_ADDRESS "
            "(or from_address in outreach.toml) to something like 'Shop <hello@shop.example>'"
        )
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def message_id_for(envelope: Envelope, *, domain: str) -> str:
    """The Message-ID of ``envelope``: the same for every delivery of it."""
    return f"<{envelope.idempotency_key}@{domain}>"


def sender_domain(envelope: Envelope, *, from_address: str) -> str:
    """The domain the Message-ID of ``envelope`` uses."""
    return _sender_domain(envelope.from_address or from_address)


def build_email(envelope: Envelope, *, from_address: str) -> EmailMessage:
    """A MIME message for ``envelope``: text (+ HTML alternative), UTF-8 headers.

    The Message-ID is ``<{idempotency_key}@{sender domain}>``, so a message
    delivered twice carries the same id. A message that cannot be built (an
    invalid recipient, a header with a line break) raises
    PermanentChannelError: retrying cannot fix it.
    """
    sender = envelope.from_address or from_address
    domain = _sender_domain(sender)
    where = f"message {envelope.message_id}"
    if not _MSGID_LOCAL.match(envelope.idempotency_key):
        raise PermanentChannelError(
            f"{where}: idempotency key '{envelope.idempotency_key}' cannot be a Message-ID "
            "(use letters, digits, '-', '.', '_')"
        )
    message = EmailMessage(policy=MAIL_POLICY)
    try:
        message["From"] = sender
        message["To"] = envelope.to
        recipients = message["To"].addresses
        if len(recipients) != 1 or not recipients[0].domain or message["To"].defects:
            raise ValueError(f"'{envelope.to}' is not one email address")
        if envelope.subject is not None:
            message["Subject"] = envelope.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = message_id_for(envelope, domain=domain)
        for name, value in envelope.headers.items():
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header '{name}' is set by Outreach and cannot be overridden")
            message[name] = value
        message.set_content(envelope.text, charset="utf-8")
        if envelope.html is not None:
            message.add_alternative(envelope.html, subtype="html", charset="utf-8")
    except (ValueError, TypeError, IndexError) as exc:
        raise PermanentChannelError(f"{where} to {envelope.to!r} cannot be built: {exc}") from None
    return message


def envelope_sender(message: EmailMessage) -> str:
    """The bare address of the From header (SMTP's MAIL FROM)."""
    address: Address = message["From"].addresses[0]
    return address.addr_spec


def envelope_recipient(message: EmailMessage) -> str:
    """The bare address of the To header (SMTP's RCPT TO)."""
    address: Address = message["To"].addresses[0]
    return address.addr_spec

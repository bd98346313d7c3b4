"""Delivery channels: the file outbox (default), SMTP and Twilio.

======================  =======  =======================================
backend name            channel  chosen by
======================  =======  =======================================
``outbox-email``        email    ``email_transport = "outbox"`` (default)
``smtp``                email    ``email_transport = "smtp"``
``outbox-sms``          sms      ``sms_transport = "outbox"`` (default)
``twilio``              sms      ``sms_transport = "twilio"``
======================  =======  =======================================

    base.py      the envelope and the backend protocol
    registry.py  backends by name; what the transport settings may say
    mime.py      MIME messages for email backends
    outbox.py    the file outbox (one .eml per email, one JSON line per SMS)
    smtp.py      SMTP: connections per thread (smtplib), failures classified
    smtpwire.py  SMTP on an open connection: a batch pipelined, replies read off the socket
    twilio.py    Twilio's Messages API (httpx)
    sms.py       SMS segments and encodings, as carriers count them

Provider modules are imported only when their backend is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.channels.base import ChannelBackend, Envelope
from outreach.channels.registry import (
    backend_for,
    check_settings,
    register_backend,
    registered_backends,
    transports,
)

if TYPE_CHECKING:
    from outreach.config import Settings

__all__ = [
    "ChannelBackend",
    "Envelope",
    "backend_for",
    "check_settings",
    "register_backend",
    "registered_backends",
    "transports",
]


def _outbox_email(settings: Settings) -> ChannelBackend:
    from outreach.channels.outbox import OutboxEmail

    return OutboxEmail.from_settings(settings)


def _outbox_sms(settings: Settings) -> ChannelBackend:
    from outreach.channels.outbox import OutboxSms

    return OutboxSms.from_settings(settings)


def _smtp(settings: Settings) -> ChannelBackend:
    from outreach.channels.smtp import SmtpBackend

    return SmtpBackend.from_settings(settings)


def _twilio(settings: Settings) -> ChannelBackend:
    from outreach.channels.twilio import TwilioBackend

    return TwilioBackend.from_settings(settings)


register_backend("outbox-email", _outbox_email, channel="email", transport="outbox")
register_backend("smtp", _smtp, channel="email")
register_backend("outbox-sms", _outbox_sms, channel="sms", transport="outbox")
register_backend("twilio", _twilio, channel="sms")

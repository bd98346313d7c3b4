"""Delivery channels: the file outbox (default), SMTP and Twilio.

======================  =======  =========================================
backend name            channel  chosen by
======================  =======  =========================================
``outbox-email``        email    ``email_transport = "outbox"`` (default)
``smtp``                email    ``email_transport = "smtp"``
``outbox-sms``          sms      ``sms_transport = "outbox"`` (default)
``twilio``              sms      ``sms_transport = "twilio"``
======================  =======  =========================================

Provider modules are imported only when their backend is first used.
"""

from __future__ import annotations

from outreach.channels.base import (
    ChannelBackend,
    Envelope,
    backend_for,
    build_email,
    register_backend,
    registered_backends,
)
from outreach.config import Settings

__all__ = [
    "ChannelBackend",
    "Envelope",
    "backend_for",
    "build_email",
    "register_backend",
    "registered_backends",
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


register_backend("outbox-email", _outbox_email)
register_backend("smtp", _smtp)
register_backend("outbox-sms", _outbox_sms)
register_backend("twilio", _twilio)

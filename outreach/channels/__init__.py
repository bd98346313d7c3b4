"""Delivery channels: the file outbox (default), SMTP, Twilio, Aliyun and Tencent Cloud SMS.

======================  =======  =======================================
backend name            channel  chosen by
======================  =======  =======================================
``outbox-email``        email    ``email_transport = "outbox"`` (default)
``smtp``                email    ``email_transport = "smtp"``
``outbox-sms``          sms      ``sms_transport = "outbox"`` (default)
``twilio``              sms      ``sms_transport = "twilio"``
``aliyun``              sms      ``sms_transport = "aliyun"``
``tencent``             sms      ``sms_transport = "tencent"``
======================  =======  =======================================

    base.py      the envelope and the backend protocol
    registry.py  backends by name; what the transport settings may say
    mime.py      MIME messages for email backends
    outbox.py    the file outbox (one .eml per email, one JSON line per SMS)
    smtp.py      SMTP: connections per thread (smtplib), failures classified
    smtpwire.py  SMTP on an open connection: a batch pipelined, replies read off the socket
    twilio.py    Twilio's Messages API (httpx)
    aliyun.py    Aliyun SMS SendSms (its SDK, the extra outreach[aliyun])
    tencent.py   Tencent Cloud SMS SendSms (its SDK, the extra outreach[tencent])
    approved.py  sms.providers.yaml: the approved templates those two send, and their limits
    china.py     phone numbers and days as the Chinese providers count them
    sms.py       SMS segments and encodings, as carriers count them

Provider modules are imported only when their backend is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.channels.base import ChannelBackend, Envelope, ProviderTemplate
from outreach.channels.registry import (
    BackendCheck,
    backend_for,
    check_settings,
    register_backend,
    registered_backends,
    templates_for,
    transports,
)

if TYPE_CHECKING:
    from outreach.config import Settings

__all__ = [
    "ChannelBackend",
    "Envelope",
    "ProviderTemplate",
    "backend_for",
    "check_settings",
    "register_backend",
    "registered_backends",
    "templates_for",
    "transports",
]

#: What each built-in provider needs at start (besides its SDK).
TWILIO_SETTINGS = ("twilio_account_sid", "twilio_auth_token", "twilio_from")
ALIYUN_SETTINGS = ("aliyun_access_key_id", "aliyun_access_key_secret", "aliyun_sign_name")
TENCENT_SETTINGS = ("tencent_secret_id", "tencent_secret_key", "tencent_sms_app_id", "tencent_sign_name")


def _requiring(*names: str) -> BackendCheck:
    def check(settings: Settings) -> None:
        for name in names:
            settings.require(name)

    return check


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
def _aliyun(settings: Settings) -> ChannelBackend:
    from outreach.channels.aliyun import AliyunBackend

    return AliyunBackend.from_settings(settings)


def _check_aliyun(settings: Settings) -> None:
    from outreach.channels.aliyun import sdk

    _requiring(*ALIYUN_SETTINGS)(settings)
    sdk()


def _tencent(settings: Settings) -> ChannelBackend:
    from outreach.channels.tencent import TencentBackend

    return TencentBackend.from_settings(settings)


def _check_tencent(settings: Settings) -> None:
    from outreach.channels.tencent import sdk

    _requiring(*TENCENT_SETTINGS)(settings)
    sdk()


register_backend("twilio", _twilio, channel="sms", check=_requiring(*TWILIO_SETTINGS))
register_backend("aliyun", _aliyun, channel="sms", templates="aliyun", check=_check_aliyun)
register_backend("tencent", _tencent, channel="sms", templates="tencent", check=_check_tencent)

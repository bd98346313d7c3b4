"""The channel seam: one envelope, one ``deliver``.

A backend turns an :class:`Envelope` into a delivered message and returns the
provider's id for it. It raises :class:`~outreach.errors.ChannelError` when
the worker should try again later (a server down, a timeout, a 4xx/429/5xx
that says "not now") and :class:`~outreach.errors.PermanentChannelError` when
trying again cannot help (a refused recipient, an invalid number). Backends
are registered by name in :mod:`outreach.channels.registry`.

SMS providers that send only pre-approved templates (Aliyun, Tencent Cloud)
take the :class:`ProviderTemplate` an envelope carries — its code, sign name
and parameters, filled for the customer — instead of the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class ProviderTemplate:
    """An SMS provider's pre-approved template, filled for one customer
    (from the template folder's ``sms.providers.yaml``)."""

    provider: str  # the sms_transport it is for: "aliyun" | "tencent"
    code: str  # Aliyun's TemplateCode (SMS_…), Tencent's TemplateId
    sign_name: str | None  # the mapping's 签名; None: the provider setting's
    #: (name, value) in order; Tencent's are positional: "1", "2", …
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """One message, ready to hand to a provider."""

    message_id: int  # our outbox row id
    channel: str  # "email" | "sms"
    to: str  # email address or E.164 phone
    text: str  # plain-text body (email text part, or the SMS body)
    subject: str | None = None  # email only
    html: str | None = None  # email only (compiled MJML)
    from_address: str | None = None  # default: settings.from_address / twilio_from
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    idempotency_key: str  # stable per message; the Message-ID local part
    sent_at: datetime | None = None  # a simulated send time (--now), naive UTC; None: the wall clock
    template: ProviderTemplate | None = None  # SMS through a provider of approved templates only


class ChannelBackend(Protocol):
    """A way to deliver messages of one channel."""

    name: str  # "outbox-email", "smtp", "outbox-sms", "twilio"
    channel: str  # "email" | "sms"

    def deliver(self, envelope: Envelope) -> str:
        """Deliver and return the provider id; raise ChannelError or
        PermanentChannelError."""
        ...

"""The channel seam: one envelope, one ``deliver``.

A backend turns an :class:`Envelope` into a delivered message and returns the
provider's id for it. It raises :class:`~outreach.errors.ChannelError` when
the worker should try again later (a server down, a timeout, a 4xx/429/5xx
that says "not now") and :class:`~outreach.errors.PermanentChannelError` when
trying again cannot help (a refused recipient, an invalid number). Backends
are registered by name in :mod:`outreach.channels.registry`.

The worker hands a backend a batch at a time through :func:`deliver_all`:
a backend with a ``deliver_many`` of its own uses it (SMTP pipelines a
batch over one connection, one round trip a message), any other is called
once per envelope.

SMS providers that send only pre-approved templates (Aliyun, Tencent Cloud)
take the :class:`ProviderTemplate` an envelope carries — its code, sign name
and parameters, filled for the customer — instead of the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from outreach.errors import ChannelError, ProviderUnavailable

#: How delivering one envelope ended: the provider's id, or why not.
Outcome = str | ChannelError
#: ``wanted(i)``: whether envelope ``i`` is to be sent now (asked right before
#: it is; it may wait for a rate limit). ``settle(i, outcome)``: how it went.
Wanted = Callable[[int], bool]
Settle = Callable[[int, Outcome], None]


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
    #: ``html`` in pieces, (text, static): a static piece is the same object in
    #: every message of a template, so it is encoded once (``mime.build``).
    html_parts: tuple[tuple[str, bool], ...] | None = None
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


class BatchBackend(ChannelBackend, Protocol):
    """A backend that delivers a batch better than one by one."""

    def deliver_many(self, envelopes: Sequence[Envelope], *, wanted: Wanted, settle: Settle) -> None:
        """Deliver the envelopes in order, asking ``wanted(i)`` right before
        each and reporting each sent one to ``settle`` as soon as its outcome
        is known; one not wanted is skipped and not settled. After a
        ProviderUnavailable the rest are settled with it, untried."""
        ...


def deliver_all(backend: ChannelBackend, envelopes: Sequence[Envelope], *, wanted: Wanted, settle: Settle) -> None:
    """Deliver a batch through ``backend`` (see :meth:`BatchBackend.deliver_many`)."""
    many = getattr(backend, "deliver_many", None)
    if many is not None:
        many(envelopes, wanted=wanted, settle=settle)
        return
    down: ProviderUnavailable | None = None
    for index, envelope in enumerate(envelopes):
        if down is not None:
            settle(index, down)
            continue
        if not wanted(index):
            continue
        try:
            settle(index, backend.deliver(envelope))
        except ProviderUnavailable as exc:
            down = exc
            settle(index, exc)
        except ChannelError as exc:
            settle(index, exc)

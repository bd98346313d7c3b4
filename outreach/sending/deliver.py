"""Deliver one outbox message, exactly once.

The broker may hand the same message to us twice (at-least-once delivery, a
retry after a crash, a re-enqueue of a stranded row). The row's state machine
decides: only the worker whose compare-and-set moves it ``queued → sending``
sends it; everyone else returns at once. Permission is re-checked right
before delivery, so a revocation that arrived after planning stops the send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach import logs
from outreach.channels import Envelope, backend_for
from outreach.channels.sms import sms_segments
from outreach.clock import utcnow
from outreach.config import Settings
from outreach.domain import Channel, MessageStatus
from outreach.errors import ChannelError, PermanentChannelError, TemplateError
from outreach.rules.spec import RuleSpec
from outreach.sending.render import Renderer
from outreach.store import outbox, permission
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message, Rule

log = logs.get_logger("outreach.sending")

#: After this many failed attempts a retryable error becomes final.
MAX_ATTEMPTS = 5
#: Twilio's error code for a recipient who has opted out of messages.
TWILIO_UNSUBSCRIBED = "21610"


@dataclass(frozen=True)
class Outcome:
    message_id: int
    status: str  # sent | skipped | failed | not-claimed
    detail: str = ""


def deliver_message(
    message_id: int,
    *,
    settings: Settings,
    engine: Engine,
    as_of: datetime | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Claim, re-check, render, deliver and record one message.

    ``as_of`` is the simulated send time of a run launched with ``--now``;
    otherwise the wall clock records when the message went out.
    """
    with Session(engine) as session:
        found = session.execute(
            select(Message.channel, Message.run_id, Rule.name)
            .join(Rule, Rule.id == Message.rule_id)
            .where(Message.id == message_id)
        ).first()
    if found is None:
        log.warning("message not found", message_id=message_id)
        return Outcome(message_id, "not-claimed", "no such message")
    channel, run_id, rule_name = found
    with logs.bound(message_id=message_id, rule=rule_name, run_id=run_id):
        try:
            outcome = _deliver(message_id, channel, settings=settings, engine=engine, as_of=as_of, clock=clock)
        except ChannelError as exc:
            log.warning("delivery failed, will retry", channel=channel.value, error=str(exc))
            raise
        level = log.info if outcome.status in ("sent", "not-claimed") else log.warning
        level(f"message {outcome.status}", channel=channel.value, detail=outcome.detail)
        return outcome


def _deliver(
    message_id: int, channel_name: Channel, *, settings: Settings, engine: Engine, as_of: datetime | None,
    clock: Callable[[], datetime],
) -> Outcome:
    now = clock()
    # Resolve the backend before claiming: a configuration error must leave the
    # message queued (and loud), not stranded in ``sending``.
    backend = backend_for(settings, channel_name.value)
    with transaction(engine) as session:
        if not outbox.claim(session, message_id, now=now):
            return Outcome(message_id, "not-claimed")
    try:
        prepared = _prepare(message_id, settings=settings, engine=engine, now=now)
    except Exception as exc:
        # Unexpected (database down, bad configuration): give the message back
        # to the queue so a retry — or the next run — sends it; never strand it.
        with transaction(engine) as session:
            outbox.release(session, message_id, error=f"{type(exc).__name__}: {exc}")
        raise
    if isinstance(prepared, Outcome):
        return prepared
    spec, channel, address, attempts, rendered = prepared
    envelope = Envelope(
        message_id=message_id,
        channel=channel.value,
        to=address or "",
        text=rendered.text,
        subject=rendered.subject,
        html=rendered.html,
        headers=rendered.headers,
        idempotency_key=f"outreach-msg-{message_id}",
    )
    try:
        provider_id = backend.deliver(envelope)
    except PermanentChannelError as exc:
        with transaction(engine) as session:
            outbox.finish(session, message_id, status=MessageStatus.FAILED, now=clock(), error=str(exc))
            if TWILIO_UNSUBSCRIBED in str(exc) and address:
                # The carrier says the recipient opted out (replied STOP): never again.
                permission.suppress(session, channel=channel, address=address, reason="carrier opt-out", now=clock())
        return Outcome(message_id, "failed", str(exc))
    except ChannelError as exc:
        with transaction(engine) as session:
            if attempts >= MAX_ATTEMPTS:
                outbox.finish(
                    session, message_id, status=MessageStatus.FAILED, now=clock(),
                    error=f"gave up after {attempts} attempts: {exc}",
                )
                return Outcome(message_id, "failed", str(exc))
            outbox.release(session, message_id, error=str(exc))
        raise
    cost = _cost(spec, channel, rendered.text)
    with transaction(engine) as session:
        outbox.finish(
            session,
            message_id,
            status=MessageStatus.SENT,
            now=clock(),
            sent_at=as_of,
            provider_id=provider_id,
            cost=cost,
            subject=rendered.subject,
            attribution_days=spec.attribution_window_days,
        )
    return Outcome(message_id, "sent", provider_id)


def _cost(spec: RuleSpec, channel: Channel, text: str) -> Decimal:
    if channel is Channel.SMS:
        return spec.cost.sms * sms_segments(text)
    return spec.cost.email


def _prepare(message_id: int, *, settings: Settings, engine: Engine, now: datetime) -> Any:
    """Re-check permission and render; an Outcome when the message ends here."""
    with transaction(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        refusal = permission.send_refusal(session, message)
        if refusal:
            outbox.finish(session, message_id, status=MessageStatus.SKIPPED, now=now, error=refusal)
            return Outcome(message_id, "skipped", refusal)
        rule = session.get(Rule, message.rule_id)
        customer = session.get(Customer, message.customer_id)
        assert rule is not None and customer is not None
        spec = RuleSpec.model_validate(rule.definition)
        try:
            rendered = Renderer(settings=settings).render(
                template=spec.template,
                channel=message.channel,
                customer=customer,
                message_id=message_id,
                rule={"name": spec.name, "description": spec.description},
            )
        except TemplateError as exc:
            outbox.finish(session, message_id, status=MessageStatus.FAILED, now=now, error=str(exc))
            return Outcome(message_id, "failed", str(exc))
        return spec, message.channel, message.to_address, message.attempts, rendered

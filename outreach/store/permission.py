"""Permission first: who may be contacted on which channel, as SQL and at send time.

A customer may get a message on a channel when they have an address there,
their latest consent record for it is ``granted`` and the address is not on
the suppression list. Planning reads the consent from ``current_consents``
(kept by database triggers, migration 0004) and, for an earlier moment
(``--now``), from the ledger; the worker re-checks it live right before
delivery (:func:`send_refusal`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, exists, not_, select
from sqlalchemy.orm import Session, aliased

from outreach.domain import Channel, ConsentStatus
from outreach.store import dialect
from outreach.store.erased import ERASED_REASON, any_erased, erased_among
from outreach.store.models import ConsentRecord, CurrentConsent, Customer, Message, Suppression


def address_column(channel: Channel) -> Any:
    return Customer.email if channel is Channel.EMAIL else Customer.phone


def latest_consent(channel: Channel, now: datetime | None = None) -> Any:
    """The customer's latest consent status on ``channel`` (NULL if none), from the ledger."""
    query = select(ConsentRecord.status).where(
        ConsentRecord.customer_id == Customer.id, ConsentRecord.channel == channel
    )
    if now is not None:
        query = query.where(ConsentRecord.recorded_at <= now)
    return (
        query.order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def current_consent(channel: Channel) -> Any:
    """``current_consents`` of one channel, to outer-join on the customer."""
    return aliased(CurrentConsent, name=f"consent_{channel.value}")


def consent_as_of(current: Any, channel: Channel, now: datetime) -> ColumnElement[Any]:
    """The status as of ``now`` from the joined ``current_consents`` row: exact
    when that row was recorded by ``now`` (always, evaluating the present);
    otherwise (``--now`` before a later change) read from the ledger. No row:
    the customer never gave or refused consent on this channel."""
    return case(
        (current.recorded_at.is_(None), None),
        (current.recorded_at <= now, current.status),
        else_=latest_consent(channel, now),
    )


def permitted(channel: Channel, now: datetime, current: Any) -> ColumnElement[bool]:
    """Permission first: an address, consent granted as of ``now``, not suppressed."""
    address = address_column(channel)
    return and_(
        address.is_not(None),
        address != "",
        consent_as_of(current, channel, now) == ConsentStatus.GRANTED,
        not_(
            exists().where(Suppression.channel == channel, Suppression.address == address)
        ),
    )


def send_refusal(session: Session, message: Message) -> str | None:
    """Re-check permission at send time; the reason to skip, or None."""
    customer = session.get(Customer, message.customer_id)
    if customer is None:
        return "customer deleted"
    address = customer.email if message.channel is Channel.EMAIL else customer.phone
    if not address:
        return f"customer has no {message.channel.value} address"
    status = session.scalar(
        select(ConsentRecord.status)
        .where(
            ConsentRecord.customer_id == customer.id, ConsentRecord.channel == message.channel
        )
        .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )
    if status is not ConsentStatus.GRANTED:
        return f"no {message.channel.value} consent (latest: {status.value if status else 'none'})"
    suppressed = session.scalar(
        select(Suppression.reason).where(
            Suppression.channel == message.channel, Suppression.address == address
        )
    )
    if suppressed:
        return f"address suppressed ({suppressed})"
    message.to_address = address
    return None


def suppress(session: Session | Connection, *, channel: Channel, address: str, reason: str, now: datetime) -> None:
    """Add an address to the suppression list (idempotent)."""
    stmt = dialect.insert(session, Suppression).values(
        channel=channel, address=address, reason=reason, created_at=now
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["channel", "address"]))


def lift(session: Session | Connection, *, channel: Channel, address: str, reasons: tuple[str, ...]) -> int:
    """Take an address off the suppression list — only for the given reasons
    (a STOP undone by START; never a hard bounce or a complaint)."""
    result = session.execute(
        delete(Suppression).where(Suppression.channel == channel, Suppression.address == address,
                                  Suppression.reason.in_(reasons)))
    return int(getattr(result, "rowcount", 0) or 0)


def suppress_erased(session: Session | Connection, customer_ids: list[int], *, now: datetime) -> int:
    """Suppress every address of these customers that an erased customer had
    (``erased_addresses``), so a person erased once is never contacted again
    when an import brings them back. Returns how many addresses it suppressed."""
    if not customer_ids or not any_erased(session):
        return 0
    held: set[tuple[Channel, str]] = set()
    for email, phone in session.execute(select(Customer.email, Customer.phone).where(Customer.id.in_(customer_ids))):
        held.update((channel, address) for channel, address in ((Channel.EMAIL, email), (Channel.SMS, phone))
                    if address)
    matches = erased_among(session, held)
    for channel, address in sorted(matches):
        suppress(session, channel=channel, address=address, reason=ERASED_REASON, now=now)
    return len(matches)

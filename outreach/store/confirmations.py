"""Double opt-in: a channel the customer turned off (or never agreed to)
comes back only with new evidence — a link emailed to the address on file,
clicked and confirmed.

:func:`request` records that a link is to be sent — at most
``MAX_REQUESTS`` per customer in ``REQUEST_WINDOW`` — and :func:`confirm`
uses it once, before it expires and only while the same address is on
file: consent granted in the ledger with the evidence (where the link went,
when, what the customer was told) and the customer's own opt-out
suppression lifted (never a bounce's or a complaint's).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus
from outreach.store import permission
from outreach.store.models import Customer, Suppression
from outreach.store.preference_rows import ConsentConfirmation
from outreach.store.responses import OPT_OUT_REASONS, _set_consent

#: How long a confirmation link works.
VALID_FOR = timedelta(hours=48)
#: Confirmation emails per customer per window: a page cannot be used to mail someone over and over.
MAX_REQUESTS = 3
REQUEST_WINDOW = timedelta(hours=24)
#: The consent ledger's source of a confirmed double opt-in.
SOURCE = "double-opt-in"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    #: The link was used already (a second click, a replay).
    USED = "used"
    EXPIRED = "expired"
    #: The address on file is no longer the one the link went to.
    CHANGED = "changed"
    UNKNOWN = "unknown"


def blocking_suppression(session: Session, channel: Channel, address: str) -> str | None:
    """A suppression of the address that new consent cannot lift (a hard
    bounce, a complaint, an erased customer's address), or None."""
    return session.scalar(select(Suppression.reason).where(
        Suppression.channel == channel, Suppression.address == address, Suppression.reason.not_in(OPT_OUT_REASONS)))


def request(session: Session, *, customer_id: int, channel: Channel, address: str, message_id: int | None,
            now: datetime) -> ConsentConfirmation | None:
    """A new confirmation request, or None when the customer had
    ``MAX_REQUESTS`` in the last ``REQUEST_WINDOW``."""
    # One customer's requests are counted one at a time (PostgreSQL: the row
    # lock; SQLite has one writer), so two clicks at once cannot both pass.
    session.execute(select(Customer.id).where(Customer.id == customer_id).with_for_update())
    recent = session.scalar(select(func.count()).select_from(ConsentConfirmation).where(
        ConsentConfirmation.customer_id == customer_id, ConsentConfirmation.requested_at > now - REQUEST_WINDOW))
    if (recent or 0) >= MAX_REQUESTS:
        return None
    row = ConsentConfirmation(customer_id=customer_id, channel=channel, address=address, message_id=message_id,
                              requested_at=now, expires_at=now + VALID_FOR)
    session.add(row)
    session.flush()
    return row


def state(session: Session, request_id: int, *, now: datetime) -> tuple[Outcome | None, ConsentConfirmation | None]:
    """(None, the request) while it may be confirmed; else why not (and the request, if any)."""
    row = session.get(ConsentConfirmation, request_id)
    if row is None:
        return Outcome.UNKNOWN, None
    if row.confirmed_at is not None:
        return Outcome.USED, row
    if now > row.expires_at:
        return Outcome.EXPIRED, row
    on_file = session.scalar(select(Customer.email if row.channel is Channel.EMAIL else Customer.phone)
                             .where(Customer.id == row.customer_id))
    if on_file != row.address:
        return Outcome.CHANGED, row
    return None, row


def confirm(session: Session, request_id: int, *, now: datetime, evidence: str) -> Outcome:
    """Use the request once: consent granted with ``evidence``, the opt-out lifted."""
    refused, row = state(session, request_id, now=now)
    if refused is not None or row is None:
        return refused or Outcome.UNKNOWN
    taken = session.execute(update(ConsentConfirmation).where(
        ConsentConfirmation.id == request_id, ConsentConfirmation.confirmed_at.is_(None)).values(confirmed_at=now))
    if not getattr(taken, "rowcount", 0):
        return Outcome.USED  # a confirmation at the same moment won
    _set_consent(session, customer_id=row.customer_id, channel=row.channel, status=ConsentStatus.GRANTED,
                 occurred_at=now, source=SOURCE, evidence=evidence[:2000])
    permission.lift(session, channel=row.channel, address=row.address, reasons=OPT_OUT_REASONS)
    session.flush()
    return Outcome.CONFIRMED

"""The tables of a customer's own choices (the functions that use them:
``outreach.store.preferences`` and ``outreach.store.confirmations``).

``topic_optouts`` and ``marketing_pauses`` are the current choices that
planning and the send-time re-check read; ``preference_records`` is their
evidence, append-only (who, when, how, what the page said), as the consent
ledger is for channels. ``consent_confirmations`` are the double opt-in
requests: a link emailed to the address on file, valid until ``expires_at``,
used once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.domain import Channel
from outreach.store.base import Base, BigId, enum_column


class TopicOptOut(Base):
    """A topic the customer turned off: no marketing of rules with that topic."""

    __tablename__ = "topic_optouts"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    #: A ``domain.Topic`` value (a plain string: a new topic needs no migration).
    topic: Mapped[str] = mapped_column(String(32), primary_key=True)
    opted_out_at: Mapped[datetime] = mapped_column(DateTime)


class MarketingPause(Base):
    """No marketing to the customer from ``paused_at`` until ``paused_until``."""

    __tablename__ = "marketing_pauses"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(DateTime)
    paused_until: Mapped[datetime] = mapped_column(DateTime)


class PreferenceRecord(Base):
    """One change a customer made to their topics or pause, with its evidence."""

    __tablename__ = "preference_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    #: ``topic`` or ``pause``.
    kind: Mapped[str] = mapped_column(String(16))
    #: The topic (``offers``); empty for a pause.
    name: Mapped[str] = mapped_column(String(32))
    #: ``off`` / ``on`` for a topic; ``until <ISO time>`` / ``resumed`` for a pause.
    value: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_preference_records_customer", "customer_id", "recorded_at"),)


class ConsentConfirmation(Base):
    """A double opt-in request: a confirmation link sent to ``address``."""

    __tablename__ = "consent_confirmations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    #: The address on file the link was sent to (it must still be on file to confirm).
    address: Mapped[str] = mapped_column(String(320))
    #: The message whose preference page asked (no foreign key: evidence outlives it).
    message_id: Mapped[int | None] = mapped_column(BigId)
    requested_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_consent_confirmations_customer", "customer_id", "requested_at"),)

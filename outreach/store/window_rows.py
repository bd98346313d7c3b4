"""The pairs (measured message, order inside its window), kept by the
database's triggers on ``messages`` and ``orders`` (migration 0020) whatever
writes them, each with the columns the report reads of both, so the report
adds up one narrow table instead of looking up every message's window in the
orders (``store.variants``, ``store.report_rows``).

A message is measured when it was sent or held out (the control group); its
window runs from ``sent_at`` (``planned_at`` when held out), exclusive, to
``attribute_until``, inclusive. The copied columns follow the rows they come
from: an update of one re-derives the row's pairs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base, BigId


class WindowOrder(Base):
    """One order of a measured message's customer inside that message's window."""

    __tablename__ = "window_orders"

    message_id: Mapped[int] = mapped_column(BigId, ForeignKey("messages.id", ondelete="CASCADE"),
                                            primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True,
                                          autoincrement=False)
    # Of the message
    rule_id: Mapped[int] = mapped_column(BigId)
    variant: Mapped[str | None] = mapped_column(String(64))
    #: The control group's row (its window starts at ``planned_at``); else sent.
    held_out: Mapped[bool] = mapped_column(Boolean)
    planned_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Of the order
    ordered_at: Mapped[datetime] = mapped_column(DateTime)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(32))

    __table_args__ = (Index("ix_window_orders_order", "order_id"),)

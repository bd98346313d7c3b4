"""Who is in a tracked set since when (``store.memberships`` keeps it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base, BigId


class Membership(Base):
    """Who is in a tracked set (a lifecycle stage or a segment) since when, so
    ``segment_entry`` and ``lifecycle`` triggers fire on *entering* it."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(160))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    entered_at: Mapped[datetime] = mapped_column(DateTime)
    left_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Members found the first time a key is evaluated did not *enter* it.
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_memberships_key_customer", "key", "customer_id", "left_at"),
    )

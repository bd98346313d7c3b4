"""The ``webhook_tokens`` table (re-exported by :mod:`outreach.store.models`):
one-time tokens of signed webhook deliveries (Mailgun's ``signature.token``);
a token seen before is a replay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base, BigId


class WebhookToken(Base):
    __tablename__ = "webhook_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("source", "token", name="uq_webhook_tokens_token"),)

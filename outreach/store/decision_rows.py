"""The A/B decisions table (written by ``outreach.planning.abtest``, read by
``outreach.store.variants``): which variant of a rule won, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base


class VariantDecision(Base):
    """The end of a rule's A/B test: the winner (None: no variant won), the
    test that decided (metric, sample per variant, confidence), the reason in
    words and each variant's figures with the intervals compared. One per
    rule: a test is decided once; later plans give every treated customer the
    winner while it is one of the rule's variants."""

    __tablename__ = "variant_decisions"

    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"), primary_key=True, autoincrement=False)
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    winner: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    sample_per_variant: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    results: Mapped[dict[str, Any]] = mapped_column()

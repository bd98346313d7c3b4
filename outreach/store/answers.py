"""The survey answers table (the functions that use it: ``outreach.store.surveys``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base, BigId

#: Each survey kind and the scores it takes.
SCALES = {"nps": range(0, 11), "satisfaction": range(1, 6)}


class SurveyAnswer(Base):
    """One customer's answer to the survey a message asked."""

    __tablename__ = "survey_answers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(16))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    answered_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_survey_answers_rule", "rule_id", "kind"),)

"""The workers table (heartbeats; the functions that use it: ``outreach.store.workers``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base


class Worker(Base):
    """A worker process (or an embedded drain) and its last heartbeat: the
    messages it claimed go back to the queue when the heartbeat stops."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)

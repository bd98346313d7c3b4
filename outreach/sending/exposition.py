"""Serving Prometheus metrics: every worker process's figures together, and
the outbox's and the broker's depth, read when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach import brokers, logs
from outreach.config import Settings, get_settings
from outreach.domain import MessageStatus
from outreach.store.engine import engine_for
from outreach.store.models import Message

log = logs.get_logger("outreach.metrics")

OUTSTANDING = (MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING)


class OutboxCollector(Collector):
    """``outreach_outbox_messages{status}`` and ``outreach_broker_pending``."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine  # None: the one of settings.database_url
        self._broker: Any = None  # made at the first scrape, then reused

    def collect(self) -> Iterator[Any]:
        outbox = GaugeMetricFamily("outreach_outbox_messages", "Messages not finished, by status.",
                                   labels=["status"])
        try:
            with Session(self.engine or engine_for(self.settings.database_url)) as session:
                counts = dict(session.execute(
                    select(Message.status, func.count()).where(Message.status.in_(OUTSTANDING))
                    .group_by(Message.status)).all())
            for status in OUTSTANDING:
                outbox.add_metric([status.value], counts.get(status, 0))
        except Exception:
            log.warning("cannot read the outbox for metrics", exc_info=True)
        yield outbox
        if not brokers.in_process(self.settings.broker_url):
            from outreach.sending.queue import QUEUES

            pending = GaugeMetricFamily("outreach_broker_pending", "Batches the broker holds.")
            try:
                if self._broker is None:
                    self._broker = brokers.make_broker(self.settings)
                pending.add_metric([], brokers.pending(self.settings, self._broker, queues=QUEUES))
            except Exception:
                log.warning("cannot read the broker for metrics", exc_info=True)
            yield pending


def serve_multiprocess_metrics(port: int, folder: str) -> None:
    """Serve (in a background thread) what every process writes into ``folder``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    registry.register(OutboxCollector(get_settings()))
    start_http_server(port, registry=registry)
    log.info("serving metrics", port=port)

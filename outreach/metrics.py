"""Prometheus metrics of the send path and the webhook server.

``outreach worker`` serves every worker process's metrics together on
``metrics_port`` (Prometheus's multiprocess mode: each process writes its
figures to a shared folder, the supervising process reads them all);
``outreach serve`` answers ``GET /metrics``. Without a metrics port the
figures are kept in the process and cost next to nothing. The outbox's
depth by status and the broker's backlog are read when scraped
(``outreach.sending.exposition``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "outreach_messages", "Messages by what became of them (sent, skipped, failed, retried).", ["outcome"])
DELIVERY_SECONDS = Histogram(
    "outreach_delivery_seconds", "Time a provider took to take one message.", ["channel"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SECONDS = Histogram(
    "outreach_batch_seconds", "Time to claim, re-check, render, deliver and record one broker batch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
RECOVERED = Counter(
    "outreach_recovered_messages", "Messages taken back from a worker that stopped mid-send.")
WEBHOOK_REQUESTS = Counter(
    "outreach_webhook_requests", "Webhook requests by route and status code.", ["route", "status"])
WEBHOOK_SECONDS = Histogram(
    "outreach_webhook_seconds", "Time to answer a webhook request.", ["route"])

"""Deliver a batch of outbox messages, each exactly once.

The broker may hand the same batch over twice (at-least-once delivery, a
re-enqueue after a crash or a lost queue). The rows' state machine decides:
a worker sends only what its compare-and-set moved ``queued → sending``
(``store.claims``). Per chunk of a batch: one claim, one query for the
customers with their live consent and suppression (permission is re-checked
right before delivery), rendering with templates compiled once per process
(email bodies from plans, ``sending.plans``), then per group of
``FLUSH_EVERY`` messages one batch to the provider over its reused
connection (SMTP pipelines it: one round trip a message) and the outcomes
recorded in bulk — so a worker killed mid-batch leaves at most one group in
doubt, and it is reported (``redelivered``) when taken back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, select

from outreach import logs, metrics
from outreach.channels import ChannelBackend, Envelope, backend_for
from outreach.channels.base import Outcome, deliver_all
from outreach.channels.sms import sms_segments
from outreach.clock import utcnow
from outreach.config import Settings, parse_rate
from outreach.domain import Channel, MessageStatus
from outreach.errors import ChannelError, PermanentChannelError, ProviderUnavailable, TemplateError
from outreach.rules.spec import RuleSpec
from outreach.sending.limits import limiter_for
from outreach.sending.offers import give_codes
from outreach.sending.render import Rendered, renderer_for
from outreach.sending.retry import RetryPolicy
from outreach.store import campaigns, claims, permission
from outreach.store.engine import transaction
from outreach.store.models import Rule

log = logs.get_logger("outreach.sending")

#: Messages claimed at a time from a broker batch: claimed shortly before
#: they are sent, so a rate limit never leaves many waiting in ``sending``.
CLAIM_CHUNK = 100
#: Messages rendered, then handed to their provider as one batch, then
#: recorded together: what a killed worker can leave in doubt. (Under a rate
#: limit a chunk is about a second's worth, so outcomes wait at most that.)
FLUSH_EVERY = 50
#: … and outcomes are written at least this often while a batch goes out (a slow provider).
FLUSH_SECONDS = 0.5
#: How often a worker looks whether a rule's definition changed (seconds).
RULES_TTL_S = 5.0


@dataclass
class Tally:
    """What one batch did."""

    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Rule:
    checksum: str
    name: str
    spec: RuleSpec


@dataclass
class _Chunk:
    """A claimed chunk being sent: its outcomes not yet written, and what
    sending it has found out so far."""

    as_of: datetime | None  # the simulated send time (``--now``)
    tally: Tally = field(default_factory=Tally)
    sent: list[claims.Sent] = field(default_factory=list)
    ended: list[claims.Ended] = field(default_factory=list)
    retry: list[claims.Retry] = field(default_factory=list)
    suppress: list[tuple[Channel, str]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)  # when the oldest unwritten outcome came
    unavailable: dict[Channel, ChannelError] = field(default_factory=dict)  # providers down: the rest waits
    done: set[int] = field(default_factory=set)  # messages with an outcome
    paused: set[int] = field(default_factory=set)  # rules that paused themselves meanwhile
    offers: dict[int, dict[str, Any]] = field(default_factory=dict)  # each offer message's code (``offer``)
    no_offer: dict[int, str] = field(default_factory=dict)  # offer messages that cannot go: why

    def __len__(self) -> int:
        return len(self.sent) + len(self.ended) + len(self.retry)

    def written(self) -> None:
        self.sent, self.ended, self.retry, self.suppress = [], [], [], []
        self.since = time.monotonic()


class Sender:
    """Sends batches for one process: its renderer, backends, rate limiters,
    rules and retry policy are made once and reused for every message."""

    def __init__(self, settings: Settings, engine: Engine, *, worker_id: str, broker: Any = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.engine, self.worker_id, self.broker, self.clock = (
            settings, engine, worker_id, broker, clock)
        self.policy = RetryPolicy.from_settings(settings)
        self.renderer = renderer_for(settings)
        self._rules: dict[int, _Rule] = {}
        self._rules_checked = 0.0
        self._backends: dict[str, ChannelBackend] = {}
        self._timers: dict[Channel, Any] = {}
        self._outcomes: dict[int, deque[bool]] = {}  # rule id → recent outcomes (True: failed)
        #: Claimed at a time: under a rate limit, about a second's worth, so a
        #: pause or a stop takes effect within a second and nothing waits long in ``sending``.
        per_second = [limit * 1000 / window for limit, window in
                      (parse_rate(rate) for rate in settings.rate_limits.values())]
        self.chunk = max(1, min([CLAIM_CHUNK, *(int(p) for p in per_second)]))

    # -------------------------------------------------------------- a batch
    def deliver(self, ids: Sequence[int], *, as_of: datetime | None = None) -> Tally:
        """Send what of ``ids`` this worker can claim. ``as_of`` is the
        simulated send time of a run launched with ``--now``."""
        tally = Tally()
        started = time.monotonic()
        for start in range(0, len(ids), self.chunk):
            tally.add(self._chunk(ids[start:start + self.chunk], as_of=as_of))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return tally

    def _chunk(self, ids: Sequence[int], *, as_of: datetime | None) -> Tally:
        chunk = _Chunk(as_of)
        with self.engine.begin() as conn:  # one transaction: claim, and read what sending needs
            held = claims.claim_batch(conn, ids, worker_id=self.worker_id, now=self.clock())
            rows = claims.load_claimed(conn, held)
            if rows:
                self._load_rules(conn, {r.rule_id for r in rows})
                chunk.offers, chunk.no_offer = give_codes(conn, rows, {i: r.spec for i, r in self._rules.items()},
                                                          now=as_of or self.clock())
        if not held:
            return chunk.tally
        chunk.tally.claimed = len(held)
        try:
            for start in range(0, len(rows), FLUSH_EVERY):
                self._group(rows[start:start + FLUSH_EVERY], chunk)
                self._flush(chunk)
        except BaseException:
            # Something unexpected (the database, a bug, a stop): what was tried is
            # recorded, the rest goes back to the queue untouched.
            self._flush(chunk)
            untried = [r.id for r in rows if r.id not in chunk.done]
            with self.engine.begin() as conn:
                chunk.tally.released += claims.release(conn, untried, worker_id=self.worker_id,
                                                       error="released: the worker stopped before trying it")
            raise
        held_back = [r.id for r in rows if r.id not in chunk.done]
        if held_back:
            with self.engine.begin() as conn:
                chunk.tally.released += claims.release(conn, held_back, worker_id=self.worker_id,
                                                       error="held: the campaign paused itself")
        return chunk.tally

    def _group(self, rows: Sequence[claims.Claimed], chunk: _Chunk) -> None:
        """Re-check and render each message of ``rows``, then hand each
        channel's to its provider as one batch (SMTP pipelines it)."""
        ready: dict[Channel, list[tuple[claims.Claimed, Rendered]]] = {}
        for row in rows:
            if row.rule_id in chunk.paused:
                continue  # its campaign paused itself: back to the queue
            rendered = self._prepare(row, chunk)
            if rendered is None:
                chunk.done.add(row.id)  # skipped, failed or waiting: its outcome is pending
            else:
                ready.setdefault(row.channel, []).append((row, rendered))
        for channel, items in ready.items():
            self._send(channel, items, chunk)

    def _prepare(self, row: claims.Claimed, chunk: _Chunk) -> Rendered | None:
        """The rendered message, or None with its outcome recorded: permission
        first (skipped), its provider down (retry), its template broken (failed)."""
        rule = self._rules[row.rule_id]
        refusal = row.refusal(chunk.as_of or self.clock())
        if refusal:
            chunk.ended.append(claims.Ended(id=row.id, status=MessageStatus.SKIPPED, error=refusal))
            log.info("message skipped", reason=refusal, **self._about(row))
            return None
        if row.id in chunk.no_offer:
            self._fail(row, chunk.no_offer[row.id], chunk)
            return None
        if row.channel in chunk.unavailable:
            self._retry(row, chunk.unavailable[row.channel], chunk)
            return None
        try:
            return self._render(row, rule, chunk.offers.get(row.id))
        except TemplateError as exc:
            self._fail(row, str(exc), chunk)
            return None

    def _send(self, channel: Channel, items: list[tuple[claims.Claimed, Rendered]], chunk: _Chunk) -> None:
        backend = self._backend(channel)
        limiter = limiter_for(self.settings, backend.name, self.broker)
        timer = self._timer(channel)
        offered: dict[int, float] = {}
        envelopes = [
            Envelope(message_id=row.id, channel=row.channel.value, to=row.address or "", text=rendered.text,
                     subject=rendered.subject, html=rendered.html, html_parts=rendered.html_parts,
                     headers=rendered.headers, idempotency_key=f"outreach-msg-{row.id}", sent_at=chunk.as_of,
                     template=rendered.template)
            for row, rendered in items
        ]

        def wanted(index: int) -> bool:
            if items[index][0].rule_id in chunk.paused:
                return False  # its campaign paused itself while this batch was going out
            if limiter is not None:
                limiter.wait()
            offered[index] = time.monotonic()
            return True

        def settle(index: int, outcome: Outcome) -> None:
            row, rendered = items[index]
            chunk.done.add(row.id)
            if isinstance(outcome, str):
                if index in offered:
                    timer.observe(time.monotonic() - offered[index])
                self._sent(row, rendered, outcome, chunk)
            elif isinstance(outcome, PermanentChannelError):
                self._fail(row, str(outcome), chunk)
                if outcome.opted_out and row.address:
                    # The provider says the recipient opted out (replied STOP, 退订): never again.
                    chunk.suppress.append((row.channel, row.address))
            else:
                if isinstance(outcome, ProviderUnavailable):
                    chunk.unavailable[row.channel] = outcome  # the rest of this chunk waits with it
                self._retry(row, outcome, chunk)
            if len(chunk) >= FLUSH_EVERY or time.monotonic() - chunk.since >= FLUSH_SECONDS:
                self._flush(chunk)  # a slow provider: outcomes are written as they come

        deliver_all(backend, envelopes, wanted=wanted, settle=settle)

    def _sent(self, row: claims.Claimed, rendered: Rendered, provider_id: str, chunk: _Chunk) -> None:
        rule = self._rules[row.rule_id]
        sent_at = chunk.as_of or self.clock()
        chunk.sent.append(claims.Sent(
            id=row.id, to_address=row.address or "", provider_id=provider_id,
            cost=self._cost(rule.spec, row.channel, rendered.text), subject=rendered.subject,
            sent_at=sent_at, attribute_until=sent_at + timedelta(days=rule.spec.attribution_window_days),
        ))
        self._outcome(row.rule_id, chunk, failed=False)
        log.info("message sent", provider_id=provider_id, **self._about(row))

    def _about(self, row: claims.Claimed) -> dict[str, Any]:
        """What a message's log records say of it."""
        return {"message_id": row.id, "rule": self._rules[row.rule_id].name, "run_id": row.run_id,
                "channel": row.channel.value}

    # -------------------------------------------------------------- outcomes
    def _retry(self, row: claims.Claimed, exc: ChannelError, chunk: _Chunk) -> None:
        when = self.policy.next_attempt(row.attempts, now=self.clock(), retry_after=exc.retry_after)
        if when is None:
            self._fail(row, f"gave up after {row.attempts} attempts: {exc}", chunk)
            return
        chunk.retry.append(claims.Retry(id=row.id, not_before=when, error=str(exc)))
        log.warning("delivery failed, will retry", attempts=row.attempts, not_before=when.isoformat(),
                    error=str(exc), **self._about(row))

    def _fail(self, row: claims.Claimed, error: str, chunk: _Chunk) -> None:
        chunk.ended.append(claims.Ended(id=row.id, status=MessageStatus.FAILED, error=error))
        log.warning("message failed", error=error, **self._about(row))
        self._outcome(row.rule_id, chunk, failed=True, error=error)

    def _flush(self, chunk: _Chunk) -> None:
        if not len(chunk) and not chunk.suppress:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            claims.record(conn, worker_id=self.worker_id, now=now, sent=chunk.sent, ended=chunk.ended,
                          retry=chunk.retry)
            for channel, address in chunk.suppress:
                permission.suppress(conn, channel=channel, address=address, reason="carrier opt-out", now=now)
        tally = chunk.tally
        skipped = sum(1 for e in chunk.ended if e.status is MessageStatus.SKIPPED)
        tally.sent += len(chunk.sent)
        tally.skipped += skipped
        tally.failed += len(chunk.ended) - skipped
        tally.retried += len(chunk.retry)
        for kind, count in (("sent", len(chunk.sent)), ("skipped", skipped),
                            ("failed", len(chunk.ended) - skipped), ("retried", len(chunk.retry))):
            if count:
                metrics.MESSAGES.labels(kind).inc(count)
        chunk.written()

    def _outcome(self, rule_id: int, chunk: _Chunk, *, failed: bool, error: str = "") -> None:
        """Pause a campaign whose recent messages mostly fail (a broken
        template, a provider refusing everything) instead of burning its audience."""
        window = self._outcomes.setdefault(rule_id, deque(maxlen=self.settings.auto_pause_after))
        window.append(failed)
        if not failed or len(window) < self.settings.auto_pause_after:
            return
        rate = sum(window) / len(window)
        if rate >= self.settings.auto_pause_error_rate:
            reason = (f"paused by itself: {sum(window)} of the last {len(window)} messages failed "
                      f"(last error: {error[:300]})")
            with transaction(self.engine) as session:
                paused = campaigns.pause_rule(session, rule_id, reason=reason, now=self.clock())
            chunk.paused.add(rule_id)
            if paused:
                log.error("campaign paused: too many failures", rule=self._rules[rule_id].name,
                          failure_rate=round(rate, 2), error=error[:300])
            window.clear()

    # -------------------------------------------------------------- what a message needs
    def _load_rules(self, conn: Connection, rule_ids: set[int]) -> None:
        """Rules by id, validated once per definition (checksum), not per
        message; whether a definition changed is looked at every ``RULES_TTL_S``."""
        missing = [i for i in rule_ids if i not in self._rules]
        stale: list[int] = []
        if time.monotonic() - self._rules_checked >= RULES_TTL_S:
            self._rules_checked = time.monotonic()
            current = dict(conn.execute(select(Rule.id, Rule.checksum).where(Rule.id.in_(rule_ids))).all())
            stale = [i for i in rule_ids if i in self._rules and self._rules[i].checksum != current.get(i)]
        if not missing and not stale:
            return
        for rule_id, checksum, name, definition in conn.execute(
            select(Rule.id, Rule.checksum, Rule.name, Rule.definition).where(Rule.id.in_([*missing, *stale]))
        ):
            self._rules[rule_id] = _Rule(checksum, name, RuleSpec.model_validate(definition))

    def _render(self, row: claims.Claimed, rule: _Rule, offer: dict[str, Any] | None) -> Rendered:
        assert row.customer is not None
        return self.renderer.render(
            template=rule.spec.template_for(row.variant), channel=row.channel, customer=row.customer,
            message_id=row.id, rule={"name": rule.spec.name, "description": rule.spec.description}, event=row.event,
            offer=offer,
        )

    def _timer(self, channel: Channel) -> Any:
        found = self._timers.get(channel)
        if found is None:
            found = self._timers[channel] = metrics.DELIVERY_SECONDS.labels(channel.value)
        return found

    def _backend(self, channel: Channel) -> ChannelBackend:
        found = self._backends.get(channel.value)
        if found is None:
            found = self._backends[channel.value] = backend_for(self.settings, channel.value)
        return found

    @staticmethod
    def _cost(spec: RuleSpec, channel: Channel, text: str) -> Decimal:
        if channel is Channel.SMS:
            return spec.cost.sms * sms_segments(text)
        return spec.cost.email

"""Deliver a batch of outbox messages, each exactly once.

The broker may hand the same batch over twice (at-least-once delivery, a
re-enqueue after a crash or a lost queue). The rows' state machine decides:
a worker sends only what its compare-and-set moved ``queued → sending``
(``store.claims``). Per chunk of a batch: one claim, one query for the
customers with their live consent and suppression (permission is re-checked
right before delivery), rendering with templates compiled once per process,
delivery over the provider's reused connection, and outcomes recorded in
bulk every few messages — so a worker killed mid-batch leaves at most those
few in doubt, and they are reported (``redelivered``) when taken back.
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
from outreach.channels.sms import sms_segments
from outreach.clock import utcnow
from outreach.config import Settings, parse_rate
from outreach.domain import Channel, MessageStatus
from outreach.errors import ChannelError, PermanentChannelError, ProviderUnavailable, TemplateError
from outreach.rules.spec import RuleSpec
from outreach.sending.limits import limiter_for
from outreach.sending.render import Rendered, renderer_for
from outreach.sending.retry import RetryPolicy
from outreach.store import campaigns, claims, permission
from outreach.store.engine import transaction
from outreach.store.models import Rule

log = logs.get_logger("outreach.sending")

#: Messages claimed at a time from a broker batch: claimed shortly before
#: they are sent, so a rate limit never leaves many waiting in ``sending``.
CLAIM_CHUNK = 100
#: Outcomes are written after this many messages or seconds, whichever first:
#: what a killed worker can leave in doubt.
FLUSH_EVERY = 50
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
class _Pending:
    """Outcomes not yet written."""

    sent: list[claims.Sent] = field(default_factory=list)
    ended: list[claims.Ended] = field(default_factory=list)
    retry: list[claims.Retry] = field(default_factory=list)
    suppress: list[tuple[Channel, str]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.sent) + len(self.ended) + len(self.retry)


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
        self._paused: set[int] = set()  # rules this sender paused during the current chunk
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
        tally = Tally()
        with self.engine.begin() as conn:  # one transaction: claim, and read what sending needs
            held = claims.claim_batch(conn, ids, worker_id=self.worker_id, now=self.clock())
            rows = claims.load_claimed(conn, held)
            if rows:
                self._load_rules(conn, {r.rule_id for r in rows})
        if not held:
            return tally
        tally.claimed = len(held)
        pending = _Pending()
        unavailable: dict[Channel, ChannelError] = {}
        done: set[int] = set()
        self._paused.clear()
        try:
            for row in rows:
                if row.rule_id in self._paused:
                    continue  # its campaign paused itself: back to the queue below
                self._one(row, pending, unavailable, as_of=as_of)
                done.add(row.id)
                if len(pending) >= FLUSH_EVERY or time.monotonic() - pending.since >= FLUSH_SECONDS:
                    self._flush(pending, tally)
                    pending = _Pending()
        except BaseException:
            # Something unexpected (the database, a bug, a stop): what was tried is
            # recorded, the rest goes back to the queue untouched.
            self._flush(pending, tally)
            untried = [r.id for r in rows if r.id not in done]
            with self.engine.begin() as conn:
                tally.released += claims.release(conn, untried, worker_id=self.worker_id,
                                                 error="released: the worker stopped before trying it")
            raise
        self._flush(pending, tally)
        held_back = [r.id for r in rows if r.id not in done]
        if held_back:
            with self.engine.begin() as conn:
                tally.released += claims.release(conn, held_back, worker_id=self.worker_id,
                                                 error="held: the campaign paused itself")
        return tally

    def _one(self, row: claims.Claimed, pending: _Pending, unavailable: dict[Channel, ChannelError], *,
             as_of: datetime | None) -> None:
        rule = self._rules[row.rule_id]
        about = {"message_id": row.id, "rule": rule.name, "run_id": row.run_id, "channel": row.channel.value}
        refusal = row.refusal()
        if refusal:
            pending.ended.append(claims.Ended(id=row.id, status=MessageStatus.SKIPPED, error=refusal))
            log.info("message skipped", reason=refusal, **about)
            return
        if row.channel in unavailable:
            self._retry(row, unavailable[row.channel], pending, about)
            return
        try:
            rendered = self._render(row, rule)
        except TemplateError as exc:
            self._fail(row, str(exc), pending, about)
            return
        backend = self._backend(row.channel)
        limiter = limiter_for(self.settings, backend.name, self.broker)
        if limiter is not None:
            limiter.wait()
        sent_at = as_of or self.clock()
        envelope = Envelope(
            message_id=row.id, channel=row.channel.value, to=row.address or "", text=rendered.text,
            subject=rendered.subject, html=rendered.html, headers=rendered.headers,
            idempotency_key=f"outreach-msg-{row.id}", sent_at=as_of, template=rendered.template,
        )
        started = time.monotonic()
        try:
            provider_id = backend.deliver(envelope)
        except PermanentChannelError as exc:
            self._fail(row, str(exc), pending, about)
            if exc.opted_out and row.address:
                # The provider says the recipient opted out (replied STOP, 退订): never again.
                pending.suppress.append((row.channel, row.address))
            return
        except ProviderUnavailable as exc:
            unavailable[row.channel] = exc  # the rest of this chunk waits with it
            self._retry(row, exc, pending, about)
            return
        except ChannelError as exc:
            self._retry(row, exc, pending, about)
            return
        self._timer(row.channel).observe(time.monotonic() - started)
        pending.sent.append(claims.Sent(
            id=row.id, to_address=row.address or "", provider_id=provider_id,
            cost=self._cost(rule.spec, row.channel, rendered.text), subject=rendered.subject,
            sent_at=sent_at, attribute_until=sent_at + timedelta(days=rule.spec.attribution_window_days),
        ))
        self._outcome(row.rule_id, failed=False)
        log.info("message sent", provider_id=provider_id, **about)

    # -------------------------------------------------------------- outcomes
    def _retry(self, row: claims.Claimed, exc: ChannelError, pending: _Pending, about: dict[str, Any]) -> None:
        when = self.policy.next_attempt(row.attempts, now=self.clock(), retry_after=exc.retry_after)
        if when is None:
            self._fail(row, f"gave up after {row.attempts} attempts: {exc}", pending, about)
            return
        pending.retry.append(claims.Retry(id=row.id, not_before=when, error=str(exc)))
        log.warning("delivery failed, will retry", attempts=row.attempts, not_before=when.isoformat(),
                    error=str(exc), **about)

    def _fail(self, row: claims.Claimed, error: str, pending: _Pending, about: dict[str, Any]) -> None:
        pending.ended.append(claims.Ended(id=row.id, status=MessageStatus.FAILED, error=error))
        log.warning("message failed", error=error, **about)
        self._outcome(row.rule_id, failed=True, error=error)

    def _flush(self, pending: _Pending, tally: Tally) -> None:
        if not len(pending) and not pending.suppress:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            claims.record(conn, worker_id=self.worker_id, now=now, sent=pending.sent, ended=pending.ended,
                          retry=pending.retry)
            for channel, address in pending.suppress:
                permission.suppress(conn, channel=channel, address=address, reason="carrier opt-out", now=now)
        skipped = sum(1 for e in pending.ended if e.status is MessageStatus.SKIPPED)
        tally.sent += len(pending.sent)
        tally.skipped += skipped
        tally.failed += len(pending.ended) - skipped
        tally.retried += len(pending.retry)
        for kind, count in (("sent", len(pending.sent)), ("skipped", skipped),
                            ("failed", len(pending.ended) - skipped), ("retried", len(pending.retry))):
            if count:
                metrics.MESSAGES.labels(kind).inc(count)

    def _outcome(self, rule_id: int, *, failed: bool, error: str = "") -> None:
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
            self._paused.add(rule_id)
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

    def _render(self, row: claims.Claimed, rule: _Rule) -> Rendered:
        assert row.customer is not None
        return self.renderer.render(
            template=rule.spec.template, channel=row.channel, customer=row.customer, message_id=row.id,
            rule={"name": rule.spec.name, "description": rule.spec.description}, event=row.event,
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

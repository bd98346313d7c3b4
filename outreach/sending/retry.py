"""When a transient failure is tried again — and when it stops being one.

Like a mail server's queue: the first retry after ``retry_base`` seconds,
each next one twice as late, at most ``retry_max`` apart, for
``retry_for_hours`` in all; then the message fails (``campaign retry``
sends failed messages again once the cause is fixed). A provider's
``Retry-After`` is honoured when it asks for longer. The outbox's
``attempts`` is the one counter: the broker itself never retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from outreach.config import Settings

#: Up to this share of a delay is added at random, so messages that failed
#: together (a server down) do not all come back in the same second.
JITTER = 0.1
#: Doublings after which a delay is taken to be the cap.
MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class RetryPolicy:
    base: float  # seconds before the first retry
    cap: float  # the longest wait between two attempts
    total: float  # seconds of retrying in all

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(base=settings.retry_base, cap=max(settings.retry_max, settings.retry_base),
                   total=settings.retry_for_hours * 3600)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        doublings = max(0, attempts - 1)
        if doublings >= MAX_DOUBLINGS:
            return self.cap  # (2.0 ** 1024 overflows; any cap is reached long before)
        return float(min(self.cap, self.base * 2.0 ** doublings))

    @cached_property
    def max_attempts(self) -> int:
        """Attempts in all before a transient failure becomes final: as many
        as the delays that fit into ``total`` (the doubling ones counted, the
        rest at ``cap`` each computed)."""
        attempts, waited = 1, 0.0
        while self.delay(attempts) < self.cap and waited + self.delay(attempts) <= self.total:
            waited += self.delay(attempts)
            attempts += 1
        if self.delay(attempts) >= self.cap and waited + self.cap <= self.total:
            attempts += int((self.total - waited) // self.cap)
        return attempts

    def next_attempt(self, attempts: int, *, now: datetime, retry_after: float | None = None) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None: give up."""
        if attempts >= self.max_attempts:
            return None
        wait = max(self.delay(attempts), retry_after or 0.0)
        return now + timedelta(seconds=wait * (1 + random.uniform(0, JITTER)))

"""Per-provider rate limits (``rate_limits = {"smtp": "200/s"}``), shared by
every worker: Dramatiq's window rate limiter, kept in Redis when the broker
is Redis and in this process with the embedded broker."""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from outreach.config import Settings, parse_rate

#: How long a sender waits before asking the limiter again.
POLL_S = 0.02

_stub_backend = StubBackend()
_limiters: dict[tuple[str, str, str], Limiter] = {}
_lock = threading.Lock()


class Limiter:
    """At most ``limit`` messages per window, across processes sharing the backend."""

    def __init__(self, backend: Any, key: str, *, limit: int, window_ms: int) -> None:
        self.limit, self.window_ms = limit, window_ms
        self._window = WindowRateLimiter(backend, key, limit=limit, window=max(1, window_ms // 1000))

    def wait(self) -> float:
        """Block until one more message may go; returns the seconds waited."""
        started = time.monotonic()
        while True:
            with self._window.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return time.monotonic() - started
            time.sleep(POLL_S)


def limiter_for(settings: Settings, backend_name: str, broker: Any = None) -> Limiter | None:
    """The limiter of one backend (None: it has no limit), one per process."""
    rate = settings.rate_limits.get(backend_name)
    if rate is None:
        return None
    limit, window_ms = parse_rate(rate, setting=f"rate_limits.{backend_name}")
    client = getattr(broker, "client", None)
    key = (settings.broker_namespace, backend_name, rate)
    with _lock:
        found = _limiters.get(key)
        if found is None:
            backend = RedisBackend(client=client) if client is not None else _stub_backend
            found = _limiters[key] = Limiter(backend, f"{settings.broker_namespace}:rate:{backend_name}",
                                             limit=limit, window_ms=window_ms)
        return found

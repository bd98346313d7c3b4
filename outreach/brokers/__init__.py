"""Message brokers, one module each, chosen by the scheme of ``OUTREACH_BROKER_URL``.

    memory.py  ``memory://``                     Dramatiq's StubBroker, worked by threads
                                                 inside the command (the embedded default)
    redis.py   ``redis://``, ``rediss://``,      Dramatiq's RedisBroker, worked by separate
               ``unix://``                       ``outreach worker`` processes

A broker module has ``IN_PROCESS`` (does the command itself deliver?),
``make(settings)``, ``check(broker, settings)`` (ServiceError when it cannot
be reached), ``pending(broker, queues=…)`` (messages it still holds) and
``drain(broker, queues=…, threads=…)`` (deliver what is queued before
returning; a no-op where workers are separate processes), ``beat(broker,
queues=…)`` (this process's consumers are alive) and
``requeue_abandoned(broker, queues=…)`` (what dead consumers took, back on
the queue).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from outreach.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    import dramatiq

    from outreach.config import Settings

#: URL scheme → the module that makes that broker.
BROKERS: dict[str, str] = {}


def register_broker(scheme: str, module: str) -> None:
    """Make ``scheme://…`` broker URLs select ``module`` (imported when used)."""
    if scheme in BROKERS:
        raise RegistryError(f"broker URL scheme '{scheme}://' is already {BROKERS[scheme]}")
    BROKERS[scheme] = module


register_broker("memory", "outreach.brokers.memory")
for _scheme in ("redis", "rediss", "unix"):
    register_broker(_scheme, "outreach.brokers.redis")


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def module_for(url: str) -> ModuleType:
    """The broker module ``url`` selects; ConfigError naming the setting otherwise."""
    name = BROKERS.get(scheme_of(url))
    if name is None:
        schemes = ", ".join(f"{s}://" for s in BROKERS)
        raise ConfigError(
            f"OUTREACH_BROKER_URL '{url}' is not supported: use memory:// (embedded) or "
            f"redis://host:6379/0 (known schemes: {schemes})"
        )
    return importlib.import_module(name)


def in_process(url: str) -> bool:
    """Whether the command that enqueues also delivers (no separate workers)."""
    return bool(module_for(url).IN_PROCESS)


def make_broker(settings: Settings) -> dramatiq.Broker:
    """The broker the settings choose, checked to be reachable (ServiceError otherwise)."""
    module = module_for(settings.broker_url)
    broker: dramatiq.Broker = module.make(settings)
    module.check(broker, settings)
    return broker


def drain(settings: Settings, broker: dramatiq.Broker, *, queues: Sequence[str], threads: int) -> None:
    """Deliver what is queued before returning, where this process is the worker."""
    module_for(settings.broker_url).drain(broker, queues=queues, threads=threads)


def pending(settings: Settings, broker: dramatiq.Broker, *, queues: Sequence[str]) -> int:
    """Messages the broker still holds for ``queues`` (waiting, delayed or unacknowledged)."""
    return int(module_for(settings.broker_url).pending(broker, queues=queues))


def beat(settings: Settings, broker: dramatiq.Broker, *, queues: Sequence[str]) -> None:
    """Tell the broker this process's consumers are alive."""
    module_for(settings.broker_url).beat(broker, queues=queues)


def requeue_abandoned(settings: Settings, broker: dramatiq.Broker, *, queues: Sequence[str]) -> None:
    """Put messages that consumers silent for ``worker_dead_after`` took but
    never acknowledged back on their queues."""
    module_for(settings.broker_url).requeue_abandoned(broker, queues=queues)

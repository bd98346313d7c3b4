"""Channel backends, registered by name: what ``email_transport`` and
``sms_transport`` may say is whatever is registered here for that channel.

The built-in backends are registered by :mod:`outreach.channels`; another
package adds its own by calling :func:`register_backend` from a module it
names under the ``outreach.channels`` entry-point group, e.g. in its
``pyproject.toml``::

    [project.entry-points."outreach.channels"]
    sendgrid = "outreach_sendgrid:register"

Entry points are loaded the first time the registry is asked for a backend,
so the setting ``email_transport = "sendgrid"`` then selects it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from outreach.domain import Channel
from outreach.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    from outreach.channels.base import ChannelBackend
    from outreach.config import Settings

#: Entry-point group of third-party backends.
ENTRY_POINT_GROUP = "outreach.channels"
#: The channels a backend can serve.
CHANNELS = tuple(c.value for c in Channel)

BackendFactory = Callable[["Settings"], "ChannelBackend"]
#: Raises ConfigError naming what a backend is missing (a setting, its SDK) at start.
BackendCheck = Callable[["Settings"], None]


@dataclass(frozen=True)
class Registered:
    name: str  # unique: "outbox-email", "smtp", …
    channel: str  # "email" | "sms"
    transport: str  # what the setting {channel}_transport says to pick it
    factory: BackendFactory
    #: The section of a template's sms.providers.yaml it sends (approved templates only), or None.
    templates: str | None = None
    check: BackendCheck | None = None


_by_name: dict[str, Registered] = {}
_lock = threading.RLock()
_plugins_loaded = False


def register_backend(name: str, factory: BackendFactory, *, channel: str, transport: str | None = None,
                     templates: str | None = None, check: BackendCheck | None = None) -> None:
    """Make a backend available for ``channel`` under the setting value
    ``transport`` (default: its name). A name, and a transport of a channel,
    is registered once. ``templates``: the backend sends only pre-approved
    templates, mapped in each template folder's ``sms.providers.yaml`` under
    this name; ``check``: what ``check_settings`` runs at start."""
    transport = transport or name
    if channel not in CHANNELS:
        raise RegistryError(f"unknown channel '{channel}' for backend '{name}'; known channels: {', '.join(CHANNELS)}")
    with _lock:
        if name in _by_name:
            raise RegistryError(
                f"a channel backend named '{name}' is already registered; "
                f"choose another name (registered: {', '.join(sorted(_by_name))})"
            )
        taken = next((r for r in _by_name.values() if (r.channel, r.transport) == (channel, transport)), None)
        if taken is not None:
            raise RegistryError(
                f"{channel} transport '{transport}' is already backend '{taken.name}'; choose another transport name"
            )
        _by_name[name] = Registered(name, channel, transport, factory, templates, check)


def _load_plugins() -> None:
    """Import every module named under the ``outreach.channels`` entry points, once."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                hook = point.load()
            except Exception as exc:
                raise ConfigError(
                    f"the channel plugin '{point.name}' ({point.value}) cannot be loaded: {exc} "
                    "(fix or uninstall the package that provides it)"
                ) from exc
            if callable(hook):
                hook()


def registered_backends() -> list[str]:
    """Names of every registered backend, sorted."""
    _load_plugins()
    with _lock:
        return sorted(_by_name)


def transports(channel: str) -> list[str]:
    """The values ``{channel}_transport`` may take, sorted."""
    _load_plugins()
    with _lock:
        return sorted(r.transport for r in _by_name.values() if r.channel == channel)


def _lookup(channel: str, transport: str) -> Registered | None:
    _load_plugins()
    with _lock:
        return next((r for r in _by_name.values() if (r.channel, r.transport) == (channel, transport)), None)


def check_settings(settings: Settings) -> None:
    """Both transports in the settings name a registered backend, and the
    backends have what they need (ConfigError naming the setting otherwise),
    so a typo or a missing key fails at start, not at the first send."""
    for channel in CHANNELS:
        setting = f"{channel}_transport"
        transport = str(getattr(settings, setting))
        found = _lookup(channel, transport)
        if found is None:
            raise ConfigError(
                f"OUTREACH_{setting.upper()} '{transport}' is not one of the {channel} transports; "
                f"choose one of: {', '.join(transports(channel))}"
            )
        if found.check is not None:
            found.check(settings)


def templates_for(settings: Settings, channel: str) -> str | None:
    """The ``sms.providers.yaml`` section the configured backend of ``channel``
    sends (None: it sends the rendered text, or the transport is unknown)."""
    if channel not in CHANNELS:
        return None
    found = _lookup(channel, str(getattr(settings, f"{channel}_transport")))
    return found.templates if found else None


def backend_for(settings: Settings, channel: str) -> ChannelBackend:
    """The backend the settings choose for ``channel``.

    Raises RegistryError for an unknown channel or transport, ConfigError when
    the chosen backend is missing a setting it needs.
    """
    if channel not in CHANNELS:
        raise RegistryError(f"unknown channel '{channel}'; known channels: {', '.join(CHANNELS)}")
    setting = f"{channel}_transport"
    transport = str(getattr(settings, setting))
    found = _lookup(channel, transport)
    if found is None:
        raise RegistryError(
            f"unknown {channel} transport '{transport}' (setting {setting}); "
            f"choose one of: {', '.join(transports(channel))} (registered backends: {', '.join(registered_backends())})"
        )
    backend = found.factory(settings)
    if backend.channel != channel:
        raise RegistryError(
            f"backend '{found.name}' delivers {backend.channel}, not {channel}; check the setting {setting}"
        )
    return backend

"""One configuration resolver.

Precedence, highest first: explicit overrides (CLI options) → environment
variables ``OUTREACH_*`` → ``outreach.toml`` in the working directory (or the
file named by ``OUTREACH_CONFIG``) → the defaults below.

With no configuration at all Outreach runs embedded: a SQLite file, an
in-process Dramatiq broker and worker, and a file outbox.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_serializer
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from outreach.errors import ConfigError

#: Embedded default database: a SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///outreach.db"
#: ``memory://`` selects Dramatiq's in-process broker and an in-process worker.
DEFAULT_BROKER_URL = "memory://"
#: Secret used only by the embedded SQLite default; production must set its own.
DEV_SECRET_KEY = "outreach-embedded-development-secret"


class Settings(BaseSettings):
    """Every setting, with its environment variable ``OUTREACH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="OUTREACH_", extra="forbid")

    #: URLs may carry a password: ``repr`` and messages show them masked.
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    #: Redis key namespace, so several installations (or test runs) share one Redis.
    broker_namespace: str = "outreach"
    worker_threads: int = Field(default=4, ge=1)

    rules_dir: Path = Path("rules")
    templates_dir: Path = Path("templates")
    outbox_dir: Path = Path("outbox")

    #: Where the webhook server is reachable from customers' mail clients.
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    order_webhook_secret: SecretStr | None = None

    #: A registered email backend (``outreach.channels``): ``outbox`` writes
    #: .eml files, ``smtp`` talks to a real SMTP server.
    email_transport: str = "outbox"
    from_address: str = "Outreach Demo <hello@outreach.example>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 30.0

    #: A registered SMS backend: ``outbox`` writes JSON lines, ``twilio``
    #: calls the Twilio Messages API.
    sms_transport: str = "outbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"

    #: debug | info | warning | error; unset: info for the long-running
    #: services (worker, serve, scheduler), warning for the other commands.
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    #: console (for people) or json (one object per line, for log collectors).
    log_format: Literal["console", "json"] = "console"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("OUTREACH_CONFIG", "outreach.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    @field_serializer("database_url", "broker_url")
    def _masked(self, url: str) -> str:
        """Dumped settings (JSON, logs) never carry a URL's password."""
        return masked_url(url)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (masked_url(value) if name in ("database_url", "broker_url") else value)

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def safe_database_url(self) -> str:
        """The database URL with its password masked, for messages and logs."""
        return masked_url(self.database_url)

    def require_secret(self) -> str:
        if self.secret_key:
            return self.secret_key.get_secret_value()
        if self.embedded:
            return DEV_SECRET_KEY
        raise ConfigError(
            "OUTREACH_SECRET_KEY is not set: production installations must sign "
            "unsubscribe and click links with their own secret "
            "(set OUTREACH_SECRET_KEY or secret_key in outreach.toml)"
        )

    def require_order_secret(self) -> str:
        if self.order_webhook_secret:
            return self.order_webhook_secret.get_secret_value()
        return self.require_secret()

    def require(self, name: str) -> Any:
        """The setting's value (a secret's plain text); ConfigError naming it when unset."""
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value in (None, ""):
            raise ConfigError(
                f"setting '{name}' is required here: set OUTREACH_{name.upper()} "
                f"or {name} in outreach.toml"
            )
        return value


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unchanged when it has none)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; explicit ``overrides`` (from the CLI) win."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"OUTREACH_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return load_settings()


def get_settings() -> Settings:
    """Settings from the environment, cached for the life of the process."""
    return _cached()


def reset_settings_cache() -> None:
    _cached.cache_clear()

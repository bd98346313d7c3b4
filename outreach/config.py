"""One configuration resolver.

Precedence, highest first: explicit overrides (CLI options) → environment
variables ``OUTREACH_*`` → ``outreach.toml`` in the working directory (or the
file named by ``OUTREACH_CONFIG``) → the defaults below.

With no configuration at all Outreach runs embedded: a SQLite file, an
in-process Dramatiq broker and worker, and a file outbox.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_serializer, field_validator
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
#: Without ``secret_key``, an embedded installation signs with a random
#: secret of its own, kept in this file beside its SQLite database (made on
#: first use, readable by its owner only). No published secret ever signs.
SECRET_FILE_SUFFIX = ".secret"

#: Amazon SNS's hosts (sns.<region>.amazonaws.com, China's .com.cn), over HTTPS.
SNS_URL_PATTERN = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
#: Consecutive soft bounces (without a delivery between) that suppress an address.
SOFT_BOUNCE_LIMIT = 3


class Settings(BaseSettings):
    """Every setting, with its environment variable ``OUTREACH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="OUTREACH_", extra="forbid")

    #: URLs may carry a password: ``repr`` and messages show them masked.
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    #: Redis key namespace, so several installations (or test runs) share one Redis.
    broker_namespace: str = "outreach"
    #: Threads of the in-process worker (embedded) and of each worker process.
    #: Python runs one thread at a time per process: two cover waiting on the
    #: network; more processes (``outreach worker --processes``) use more cores.
    worker_threads: int = Field(default=2, ge=1)
    #: Outbox ids per broker message: one claim, one permission re-check and
    #: one bulk update of outcomes per batch.
    batch_size: int = Field(default=200, ge=1, le=1000)
    #: A worker process beats this often; one silent for ``worker_dead_after``
    #: seconds is presumed dead and its messages go back to the queue.
    worker_heartbeat: float = Field(default=5.0, gt=0)
    worker_dead_after: float = Field(default=30.0, gt=0)
    #: Seconds between a worker's queue maintenance: dead workers' messages,
    #: deferred and retried messages now due, a queue the broker lost.
    maintenance_interval: float = Field(default=15.0, gt=0)
    #: A message queued this long while the broker holds nothing was lost by
    #: it (Redis restarted empty) and is handed over again.
    broker_lost_after: float = Field(default=60.0, gt=0)

    #: Transient errors (a server down, 4xx, 429/5xx) are retried with capped
    #: exponential backoff — retry_base, doubling, at most retry_max seconds
    #: apart — for retry_for_hours, then the message fails (``campaign retry``
    #: sends failed messages again).
    retry_base: float = Field(default=60.0, gt=0)
    retry_max: float = Field(default=3600.0, gt=0)
    retry_for_hours: float = Field(default=48.0, gt=0)
    #: Per-provider rate limits, honoured across all workers (in Redis when the
    #: broker is Redis): backend name → "N/s" or "N/min", e.g. {"smtp": "200/s"}.
    rate_limits: dict[str, str] = Field(default_factory=dict)
    #: A campaign pauses itself when at least this share of its last
    #: ``auto_pause_after`` outcomes (seen by one worker) are failures.
    auto_pause_error_rate: float = Field(default=0.5, gt=0, le=1)
    auto_pause_after: int = Field(default=50, ge=1)
    #: Prometheus metrics: ``outreach worker`` serves them on this port
    #: (all its processes together); ``outreach serve`` at /metrics.
    metrics_port: int | None = None

    rules_dir: Path = Path("rules")
    templates_dir: Path = Path("templates")
    outbox_dir: Path = Path("outbox")

    #: Where the webhook server is reachable from customers' mail clients.
    public_url: str = "http://127.0.0.1:8000"
    #: Signs links and (without order_webhook_secret) orders. Unset on SQLite: a
    #: random secret of the installation's own, kept beside the database file.
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
    #: Aliyun SMS (Dysmsapi SendSms) and Tencent Cloud SMS (SendSms, API 3.0):
    #: pre-approved templates only (docs/sms-providers.md). The endpoints are
    #: the providers' own; tests point them at a local server.
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: SecretStr | None = None
    #: The approved sign name (签名) shown as 【…】; a template's mapping may name another.
    aliyun_sign_name: str | None = None
    aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    #: The secret path segment of Aliyun's report and reply pushes (unsigned by Aliyun).
    aliyun_webhook_secret: SecretStr | None = None
    tencent_secret_id: str | None = None
    tencent_secret_key: SecretStr | None = None
    #: The SMS application's SdkAppId (1400…), from the Tencent Cloud SMS console.
    tencent_sms_app_id: str | None = None
    tencent_sign_name: str | None = None
    tencent_region: str = "ap-guangzhou"
    tencent_endpoint: str = "https://sms.tencentcloudapi.com"
    #: The secret path segment of Tencent's status and reply callbacks (unsigned by Tencent).
    tencent_webhook_secret: SecretStr | None = None

    #: ESP feeds (docs/esp-feeds.md): each route exists only with its setting.
    #: Amazon SES through SNS: the topics whose notifications are accepted.
    ses_topic_arns: list[str] = Field(default_factory=list)
    #: Where SNS signing certificates and subscription URLs may live (Amazon's
    #: own hosts); tests point it at a local server, nothing else should.
    sns_url_pattern: str = SNS_URL_PATTERN
    #: SendGrid's Signed Event Webhook verification key (base64 DER or PEM; public, not a secret).
    sendgrid_webhook_public_key: str | None = None
    #: Mailgun's HTTP webhook signing key.
    mailgun_webhook_signing_key: SecretStr | None = None
    #: Postmark: the basic-auth user and password written into the webhook URL.
    postmark_webhook_username: str = "postmark"
    postmark_webhook_password: SecretStr | None = None
    #: This many soft bounces in a row (no delivery between) suppress an address.
    soft_bounce_limit: int = Field(default=SOFT_BOUNCE_LIMIT, ge=1)

    #: The currency the ROI report shows money in (ISO 4217, e.g. CNY); unset:
    #: ``currency:`` of rules/currency.yaml, else CNY. Orders in other currencies
    #: are converted with that file's ``rates:`` (docs/report.md).
    report_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")

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

    @field_validator("rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, rate in value.items():
            parse_rate(rate, setting=f"rate_limits.{name}")
        return value

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
            return _installation_secret(self.database_url)
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


#: In-memory SQLite databases live and die with the process; so does their secret.
_PROCESS_SECRET = secrets.token_urlsafe(32)


def _installation_secret(database_url: str) -> str:
    """The embedded installation's own secret: ``<database file>.secret``,
    made (``O_EXCL``, mode 0600) by whichever process needs it first."""
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return _PROCESS_SECRET
    path = Path(database + SECRET_FILE_SUFFIX)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the installation's secret {path}: {exc.strerror} "
                          "(set OUTREACH_SECRET_KEY, or make the database's folder writable)") from exc
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    for _ in range(50):  # another process may be writing it this instant
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)
    raise ConfigError(f"the installation's secret {path} is empty (delete it, or set OUTREACH_SECRET_KEY)")


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute)\s*$")


def parse_rate(text: str, *, setting: str = "rate_limits") -> tuple[int, int]:
    """("120/min") → (120 messages, 60_000 ms window)."""
    match = _RATE.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{setting}: '{text}' is not a rate like '200/s' or '6000/min'")
    return int(match.group(1)), 1000 if match.group(2).startswith("s") else 60_000


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

"""What every command shares: settings and logging, the database, errors
for people (one line, a hint, an exit code), and ``--format json``."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from sqlalchemy import Engine

from outreach import logs
from outreach.config import Settings, load_settings, masked_url
from outreach.errors import EXIT_INTERNAL, InputError, OutreachError, Problem, ServiceError

#: Tables stay readable when output goes to a file or a pipe.
PIPE_WIDTH = 150
console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])

#: The file name that means "read standard input" / "write standard output".
STDIN = "-"

NOW_OPTION = click.option(
    "--now",
    metavar="ISO-TIME",
    help="Evaluate as of this moment instead of the wall clock (e.g. 2026-03-01T09:00:00+08:00).",
)
FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="table for people, json for scripts (written to standard output).",
)


# ------------------------------------------------------------------ errors
def _print_error(text: str) -> None:
    err_console.print(f"[bold red]error[/]: {text}", highlight=False, soft_wrap=True, markup=True)


def _service_error(exc: BaseException) -> OutreachError | None:
    """What a library raised when a service is unreachable, as a ServiceError."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    ctx = click.get_current_context(silent=True)
    overrides = (ctx.find_root().obj or {}) if ctx else {}
    settings: Settings | None = overrides.get("settings")
    if isinstance(exc, (OperationalError, InterfaceError)):
        url = settings.database_url if settings else "the database"
        text = str(getattr(exc, "orig", None) or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if url.startswith("sqlite"):
            hint = ("check that the folder in OUTREACH_DATABASE_URL exists and is writable, and that no other "
                    "program holds the file")
        else:
            hint = ("is the database server running and reachable? check OUTREACH_DATABASE_URL "
                    "(host, port, user, database)")
        return ServiceError(f"cannot use the database {masked_url(url)}: {reason} (hint: {hint})")
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        url = settings.broker_url if settings else "the broker"
        return ServiceError(
            f"cannot reach the broker {masked_url(url)}: {exc} "
            "(hint: is Redis running and reachable? check OUTREACH_BROKER_URL)"
        )
    return None


def friendly(func: F) -> F:
    """Run a command so that every error reaches the user as located lines
    with a hint and the error's exit code — never as a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            for problem in exc.problems:
                _print_error(_escape(str(problem)))
            sys.exit(exc.exit_code)
        except OutreachError as exc:
            _print_error(_escape(str(exc)))
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for people
            mapped = _service_error(exc)
            if mapped is not None:
                _print_error(_escape(str(mapped)))
                sys.exit(mapped.exit_code)
            logs.get_logger("outreach.cli").debug("internal error", exc_info=True)
            _print_error(_escape(
                f"internal error: {type(exc).__name__}: {exc} (hint: this is a bug in Outreach; run again "
                "with --log-level debug to see the traceback, and report it with that output)"
            ))
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    """Our messages contain [brackets] (``[email, sms]``); rich must not read them as markup."""
    return text.replace("[", r"\[")


# ------------------------------------------------------------------ settings
def app_settings(ctx: click.Context, *, service: bool = False) -> Settings:
    """The resolved settings (command-line options win), logging configured
    from them: ``service`` commands log at info unless told otherwise."""
    root = ctx.find_root()
    obj: dict[str, Any] = root.obj
    if "settings" not in obj:
        settings = load_settings(**obj["overrides"])
        level = obj.get("log_level") or settings.log_level or ("info" if service else "warning")
        logs.configure(level=level, fmt=obj.get("log_format") or settings.log_format)
        obj["settings"] = settings
    settings = obj["settings"]
    assert isinstance(settings, Settings)
    return settings


def open_engine(settings: Settings) -> Engine:
    """The configured database: the embedded SQLite file is migrated on first
    use; any other database must already be at the newest schema."""
    from outreach.store.engine import make_engine, migrate, require_current_schema

    engine = make_engine(settings.database_url)
    if settings.embedded:
        migrate(engine)
    else:
        require_current_schema(engine)
    return engine


def now_option(value: str | None) -> tuple[datetime, bool]:
    """(the moment, whether it came from --now)."""
    from outreach.clock import parse_instant, utcnow

    if value:
        return parse_instant(value), True
    return utcnow(), False


# ------------------------------------------------------------------ json
def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(data: Any) -> str:
    """``data`` (dataclasses, Decimals, times… included) as indented JSON text."""
    return json.dumps(_plain(data), indent=2, ensure_ascii=False)


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON (:func:`to_json`) to standard output."""
    click.echo(to_json(data))


def problem_json(problem: Problem) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(problem).items() if v is not None}

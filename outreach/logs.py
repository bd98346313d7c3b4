"""One logging setup for every process (commands, workers, the webhook server).

Records are structured (structlog): every record carries the context bound
where the work happens — ``rule`` and ``run_id`` while a rule is planned,
``message_id`` (with its ``rule`` and ``run_id``) while a message is
delivered — and the libraries' own records (Dramatiq, uvicorn, APScheduler,
SQLAlchemy) go through the same renderer. ``console`` is for people,
``json`` (one object per line) for log collectors.

Level and format: ``--log-level`` / ``--log-format`` on the command line,
``OUTREACH_LOG_LEVEL`` / ``OUTREACH_LOG_FORMAT`` (or ``log_level`` /
``log_format`` in outreach.toml).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import structlog

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("console", "json")
#: Libraries whose info records say nothing an operator acts on (Alembic
#: announces its plugins and dialect on every schema check).
QUIET_BELOW_DEBUG = ("alembic",)
#: Where a record is written unless configure() is told otherwise.
DEFAULT_STREAM = sys.stderr

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(*, level: str = "warning", fmt: str = "console", stream: IO[str] | None = None) -> None:
    """Route structlog and the standard library's logging to one handler."""
    out = stream or DEFAULT_STREAM
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=bool(getattr(out, "isatty", lambda: False)()))
    structlog.configure(
        # filter_by_level first: a record below the level costs next to nothing.
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for chatty in QUIET_BELOW_DEBUG:
        logging.getLogger(chatty).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def route_through_logging() -> None:
    """Until :func:`configure` is called (Outreach used as a library, a
    benchmark), records are plain standard-library records with the fields
    as ``extra``: the host application's logging decides what is shown, and
    by default only warnings reach standard error."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars,
                    structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


route_through_logging()


def get_logger(name: str) -> Any:
    """A structured logger; keyword arguments become fields of the record."""
    return _Logger(name)


class _Logger:
    """structlog's logger behind the standard library's level check: a record
    below the level is dropped before structlog builds its logger (which its
    lazy proxy does on every call, about 10 µs — per message on the send path)."""

    __slots__ = ("_level_of", "_structured")

    def __init__(self, name: str) -> None:
        self._level_of = logging.getLogger(name)
        self._structured = structlog.stdlib.get_logger(name)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if self._level_of.isEnabledFor(level):
            getattr(self._structured, method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, "exception", event, fields)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the block (this thread or task)."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield

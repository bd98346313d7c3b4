"""The one error hierarchy of Outreach.

    OutreachError                 anything we raise on purpose               exit
    ├── ConfigError               a setting is missing or invalid (names it)    3
    │   ├── ServiceError          a database, broker or server cannot be reached 3
    │   └── RegistryError         an unknown or duplicate name in a registry    3
    ├── InputError                a user's input is wrong; location + hint      1
    │   ├── RuleError             a YAML rule (file, line, column)
    │   ├── ImportRowError        a CSV row (file, row, column)
    │   ├── TemplateError         a template (file, line)
    │   └── PayloadError          a webhook payload (field)
    └── ChannelError              a provider refused or failed a delivery       1
        ├── ProviderUnavailable   the provider cannot be reached right now
        └── PermanentChannelError a provider said "never retry this one"

The command line prints every ``OutreachError`` as located, readable lines
(no traceback reaches a marketer) and exits with the error's ``exit_code``:
1 for data and rule errors, 3 for configuration and service errors; click
uses 2 for a wrong command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

#: Exit codes of the command line.
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
#: Something we did not raise on purpose (a bug): the message says how to report it.
EXIT_INTERNAL = 4


class OutreachError(Exception):
    """Base of every error Outreach raises on purpose."""

    exit_code = EXIT_INPUT


class ConfigError(OutreachError):
    """A configuration value is missing or invalid."""

    exit_code = EXIT_CONFIG


class ServiceError(ConfigError):
    """A service Outreach needs (database, broker, mail or SMS server) cannot be reached."""


@dataclass
class Problem:
    """One located problem in a user's input."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    row: int | None = None
    field: str | None = None
    hint: str | None = None
    severity: str = "error"

    def location(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(str(self.file))
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


@dataclass
class InputError(OutreachError):
    """User input is wrong; holds one or more located problems."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @classmethod
    def single(cls, message: str, **where: Any) -> Self:
        """One problem: ``where`` names its file, line, column, row, field and hint."""
        return cls([Problem(message, **where)])


class RuleError(InputError):
    """A rule file is invalid."""


class ImportRowError(InputError):
    """One or more CSV rows are invalid."""


class TemplateError(InputError):
    """A template is missing, does not parse, or references an unknown value."""


class PayloadError(InputError):
    """A webhook payload is malformed."""


class ChannelError(OutreachError):
    """A delivery failed; the worker retries it later (``retry_after``
    seconds at the earliest, when the provider said so)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(ChannelError):
    """The provider cannot be reached at all (refused, timed out, dropped):
    the rest of the batch waits too, instead of each message trying alone."""


class PermanentChannelError(ChannelError):
    """A delivery failed in a way that retrying cannot fix; ``opted_out``:
    the provider says the recipient opted out (replied STOP or 退订), so the
    address is suppressed as well."""

    def __init__(self, message: str, *, opted_out: bool = False) -> None:
        super().__init__(message)
        self.opted_out = opted_out


class RegistryError(ConfigError):
    """An unknown or duplicate name was given to a registry."""

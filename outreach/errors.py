"""The one error hierarchy of Outreach.

    OutreachError                 anything we raise on purpose
    ├── ConfigError               a setting is missing or invalid (names the setting)
    ├── InputError                a user's input is wrong; carries location + hint
    │   ├── RuleError             a YAML rule (file, line, column)
    │   ├── ImportRowError        a CSV row (file, row, column)
    │   ├── TemplateError         a template (file, line)
    │   └── PayloadError          a webhook payload (field)
    ├── ChannelError              a provider refused or failed a delivery
    │   └── PermanentChannelError a provider said "never retry this one"
    └── RegistryError             an unknown or duplicate name in a registry

The CLI turns every ``OutreachError`` into a readable message and exit code 1;
no traceback reaches a marketer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class OutreachError(Exception):
    """Base of every error Outreach raises on purpose."""


class ConfigError(OutreachError):
    """A configuration value is missing or invalid."""


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
    def single(cls, message: str, **where: object) -> "InputError":
        return cls([Problem(message, **where)])  # type: ignore[arg-type]


class RuleError(InputError):
    """A rule file is invalid."""


class ImportRowError(InputError):
    """One or more CSV rows are invalid."""


class TemplateError(InputError):
    """A template is missing, does not parse, or references an unknown value."""


class PayloadError(InputError):
    """A webhook payload is malformed."""


class ChannelError(OutreachError):
    """A delivery failed; the worker may retry it."""


class PermanentChannelError(ChannelError):
    """A delivery failed in a way that retrying cannot fix."""


class RegistryError(OutreachError):
    """An unknown or duplicate name was given to a registry."""

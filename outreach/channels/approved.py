"""``sms.providers.yaml``: the approved SMS templates Aliyun and Tencent send.

Chinese SMS providers send no free text: a message is a template approved in
their console, named by its code, filled with parameters, under an approved
sign name (签名, shown as 【…】 before the text). A template folder maps its
``sms.txt`` to those templates, per provider, in ``sms.providers.yaml`` —
and per locale, like the other files (``sms.providers.zh_CN.yaml`` goes with
``sms.zh_CN.txt``)::

    aliyun:
      template_code: SMS_468120345
      sign_name: 翠叶茶庄              # optional: the setting aliyun_sign_name otherwise
      text: "${name}，好久不见！…"      # the approved text, as in the console (recommended)
      params:
        name: "{{ customer.name }}"    # Jinja, rendered per customer in the templates' sandbox
    tencent:
      template_id: "2118345"
      text: "{1}，好久不见！…"
      params: ["{{ customer.name }}"]  # Tencent's parameters are positional: {1}, {2}, …
      max_param_length: 12             # only for personal-verified accounts

``sms.txt`` stays what the customer reads (outbox record, preview, cost).
With ``text``, ``rules validate`` checks that 【sign】 + the approved text
filled with the sample customer's parameters reads exactly as ``sms.txt``.
This module parses the file and knows each provider's documented limits;
rendering the parameters is :mod:`outreach.sending.approved`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from outreach.channels.base import Envelope, ProviderTemplate
from outreach.channels.sms import E164_HINT, is_e164
from outreach.errors import PermanentChannelError, Problem, TemplateError
from outreach.rules.problems import problems_from
from outreach.rules.yamlpos import DuplicateKey, Positions, load_with_positions, position_of

#: The mapping's file name stem: sms.providers.yaml, sms.providers.zh_CN.yaml.
STEM, EXT = "sms.providers", "yaml"
#: The longest SMS either provider sends, sign and parameters included (characters).
MAX_TEXT = 500
#: Aliyun: each variable's value has 1 to 35 characters.
ALIYUN_MAX_PARAM = 35
#: What may not appear in an approved text or a parameter: the sign's brackets.
SIGN_BRACKETS = re.compile(r"[【】]")
#: Tencent refuses links passed as parameters (a link must be part of the approved text).
LINK = re.compile(r"https?://|www\.", re.I)
DOCS = "see docs/sms-providers.md"


def _matching(value: str, pattern: str, what: str, use: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ValueError(f"'{value}' is not {what}; use {use}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sign_name: StrictStr | None = Field(default=None, min_length=1)
    text: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_TEXT)

    @property
    def code(self) -> str:
        raise NotImplementedError

    def named(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        """(name, Jinja source, where in the section) of each parameter, in order."""
        raise NotImplementedError

    def placeholders(self) -> list[str]:
        raise NotImplementedError

    def fill(self, values: dict[str, str]) -> str:
        raise NotImplementedError

    def value_problems(self, name: str, value: str) -> list[str]:
        """What the provider's documentation refuses in one rendered parameter."""
        found = []
        if not value:
            found.append("is empty (the provider refuses an empty parameter)")
        if SIGN_BRACKETS.search(value):
            found.append("contains 【 or 】, which only the sign may use")
        return found


class AliyunTemplate(_Section):
    """Aliyun's Dysmsapi template: ``${name}`` variables, a JSON object of values."""

    template_code: StrictStr
    params: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @field_validator("template_code")
    @classmethod
    def _code(cls, value: str) -> str:
        return _matching(value, r"SMS_\d{1,20}", "an Aliyun template code", "the code the console shows, "
                         "e.g. SMS_468120345")

    @field_validator("params")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name)]
        if bad:
            raise ValueError(f"'{bad[0]}' is not a variable name; use letters, digits and _ as in ${{name}}")
        return value

    @property
    def code(self) -> str:
        return self.template_code

    def named(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        return [(name, source, ("params", name)) for name, source in self.params.items()]

    def placeholders(self) -> list[str]:
        return re.findall(r"\$\{([^}]*)\}", self.text or "")

    def fill(self, values: dict[str, str]) -> str:
        return re.sub(r"\$\{([^}]*)\}", lambda m: values.get(m.group(1), m.group(0)), self.text or "")

    def value_problems(self, name: str, value: str) -> list[str]:
        found = super().value_problems(name, value)
        if len(value) > ALIYUN_MAX_PARAM:
            found.append(f"has {len(value)} characters; Aliyun takes at most {ALIYUN_MAX_PARAM} per variable")
        return found


class TencentTemplate(_Section):
    """Tencent Cloud's template: ``{1}``, ``{2}`` … filled from a list of strings."""

    template_id: StrictStr
    params: list[StrictStr] = Field(default_factory=list)
    #: Personal-verified accounts: at most 12 characters per parameter; enterprise: no limit.
    max_param_length: int | None = Field(default=None, ge=1)

    @field_validator("template_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("template_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _matching(value, r"\d{1,20}", "a Tencent template id", "the ID (digits) the console shows, "
                         'e.g. "2118345"')

    @property
    def code(self) -> str:
        return self.template_id

    def named(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        return [(str(index + 1), source, ("params", index)) for index, source in enumerate(self.params)]

    def placeholders(self) -> list[str]:
        return re.findall(r"\{(\d+)\}", self.text or "")

    def fill(self, values: dict[str, str]) -> str:
        return re.sub(r"\{(\d+)\}", lambda m: values.get(m.group(1), m.group(0)), self.text or "")

    def value_problems(self, name: str, value: str) -> list[str]:
        found = super().value_problems(name, value)
        if self.max_param_length and len(value) > self.max_param_length:
            found.append(f"has {len(value)} characters; max_param_length is {self.max_param_length}")
        if LINK.search(value):
            found.append("is a link; Tencent takes links only as part of the approved text")
        return found


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    aliyun: AliyunTemplate | None = None
    tencent: TencentTemplate | None = None


Section = AliyunTemplate | TencentTemplate


@dataclass(frozen=True)
class Mapping:
    """One parsed ``sms.providers*.yaml``, with where each value is."""

    path: Path
    file: ProvidersFile
    positions: Positions

    def section(self, provider: str) -> Section | None:
        found = getattr(self.file, provider, None)
        return found if isinstance(found, AliyunTemplate | TencentTemplate) else None

    def problem(self, message: str, *where: str | int, hint: str | None = None) -> Problem:
        line = position_of(self.positions, tuple(where))
        return Problem(message, file=str(self.path), line=line[0] if line else None,
                       field=".".join(str(w) for w in where) or None, hint=hint)


def load_mapping(path: Path) -> Mapping:
    """Parse and validate one mapping file; TemplateError with every problem, located."""
    file = str(path)
    try:
        data, positions = load_with_positions(path.read_text(encoding="utf-8"))
    except DuplicateKey as exc:
        raise TemplateError.single(str(exc), file=file, line=exc.line, hint="remove one of the two") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise TemplateError.single(f"not valid YAML: {exc.problem or exc.context}", file=file,
                                   line=mark.line + 1 if mark else None,
                                   hint="check indentation, and quote parameters: \"{{ customer.name }}\"") from None
    if not isinstance(data, dict):
        raise TemplateError.single("a mapping of provider sections is expected (aliyun:, tencent:)", file=file,
                                   line=1, hint=DOCS)
    try:
        parsed = ProvidersFile.model_validate(data)
    except ValidationError as exc:
        problems = problems_from(exc, file, data, positions)
        for problem in problems:
            if "params" in problem.message and "text" in (problem.hint or "text"):
                problem.hint = "parameters are Jinja text in quotes, e.g. \"{{ customer.name }}\" or \"5\""
            problem.hint = problem.hint or DOCS
        raise TemplateError(problems) from None
    return Mapping(path, parsed, positions)


def static_problems(mapping: Mapping) -> list[Problem]:
    """Each section's approved text against its parameters: every variable
    given, none twice, no two side by side, no sign brackets."""
    problems = []
    for provider in ("aliyun", "tencent"):
        section = mapping.section(provider)
        if section is None or section.text is None:
            continue
        holes, names = section.placeholders(), [name for name, _, _ in section.named()]
        hint = f"the text is the approved template as the {provider} console shows it; " + (
            "its variables are ${name}, each given under params:" if provider == "aliyun"
            else "its variables are {1}, {2} …, one list item of params: each, in order")
        for hole in sorted({h for h in holes if holes.count(h) > 1}):
            problems.append(mapping.problem(f"variable '{hole}' appears twice in the text", provider, "text",
                                            hint=hint))
        for hole in [h for h in dict.fromkeys(holes) if h not in names]:
            problems.append(mapping.problem(f"the text's variable '{hole}' has no parameter", provider, "params",
                                            hint=hint))
        for name in [n for n in names if n not in holes]:
            problems.append(mapping.problem(f"parameter '{name}' is not a variable of the text", provider, "params",
                                            hint=hint))
        if re.search(r"\}\s*(\$\{|\{\d)", section.text):
            problems.append(mapping.problem("two variables side by side: the providers refuse them", provider,
                                            "text", hint="put fixed text between variables"))
        if SIGN_BRACKETS.search(section.text):
            problems.append(mapping.problem("the text contains 【 or 】: only the sign is written in them", provider,
                                            "text", hint="leave the sign out of text; it is sign_name"))
    return problems


def as_read(sign_name: str, filled: str) -> str:
    """What the customer reads: the sign in 【】, then the filled template."""
    return f"【{sign_name}】{filled}"


def template_of(envelope: Envelope, where: str, provider: str) -> ProviderTemplate:
    """The envelope's approved template, after the checks every provider makes."""
    if not is_e164(envelope.to):
        raise PermanentChannelError(f"{where}: '{envelope.to}' is not a phone number in E.164 form "
                                    f"(hint: {E164_HINT})")
    template = envelope.template
    if template is None or template.provider != provider:
        raise PermanentChannelError(
            f"{where}: no approved {provider} template for this message (hint: {provider} sends only "
            f"pre-approved templates: map sms.txt in the template's sms.providers.yaml; see docs/sms-providers.md)")
    return template

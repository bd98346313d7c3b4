"""Fill a template folder's approved SMS templates for one customer.

With ``sms_transport`` a provider of approved templates only (Aliyun,
Tencent Cloud), an SMS is sent as the template ``sms.providers.yaml`` maps
``sms.txt`` to (:mod:`outreach.channels.approved`): the file for the
customer's locale (``sms.providers.zh_CN.yaml``, then ``…zh.yaml``, then
``sms.providers.yaml``), that provider's section, its parameters rendered
as Jinja in the same bounded sandbox as the other files. ``sms.txt`` is
still rendered: it is what the outbox records, the preview shows and the
cost counts. ``rules validate`` calls :meth:`ApprovedTemplates.verify` on
a sample customer's render: the provider's documented limits, and whether
the approved text, filled, reads exactly as ``sms.txt``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError

from outreach.channels import ProviderTemplate
from outreach.channels.approved import EXT, MAX_TEXT, STEM, Mapping, as_read, load_mapping
from outreach.errors import Problem, TemplateError
from outreach.sending.sandbox import BOUNDS_HINT, VARIABLES_HINT, BoundedSandbox, render_bounded

#: (template, stem, ext, locale) → the file's name below the templates folder, or None.
Finder = Callable[[str, str, str, "str | None"], "str | None"]
DOCS = "see docs/sms-providers.md"


class ApprovedTemplates:
    """The parsed and compiled ``sms.providers*.yaml`` files of a templates
    folder (cleared with the renderer's other caches when a file changes)."""

    def __init__(self, *, env: BoundedSandbox, root: Path, find: Finder) -> None:
        self.env, self.root, self._find = env, root, find
        self._parsed: dict[str, tuple[Mapping, dict[tuple[str, str], Template]]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._parsed.clear()

    def mapping(self, name: str) -> tuple[Mapping, dict[tuple[str, str], Template]]:
        """The file ``name`` parsed, with each section's parameters compiled."""
        with self._lock:
            found = self._parsed.get(name)
        if found is not None:
            return found
        mapping = load_mapping(self.root / name)
        compiled: dict[tuple[str, str], Template] = {}
        for provider in ("aliyun", "tencent"):
            section = mapping.section(provider)
            for param, source, where in section.named() if section else []:
                try:
                    compiled[(provider, param)] = self.env.from_string(source)
                except TemplateSyntaxError as exc:
                    raise TemplateError([mapping.problem(f"parameter '{param}': template syntax error: {exc.message}",
                                                         provider, *where, hint="check the {{ }} and {% %} tags")]
                                        ) from None
        with self._lock:
            self._parsed[name] = (mapping, compiled)
        return mapping, compiled

    def _section(self, template: str, provider: str, locale: str | None) -> tuple[Mapping, Any, dict[Any, Template]]:
        name = self._find(template, STEM, EXT, locale)
        if name is None:
            raise TemplateError.single(
                f"no approved {provider} template: {STEM}.{EXT} not found", file=str(self.root / template),
                hint=f"sms_transport '{provider}' sends only templates approved in its console: map sms.txt to "
                     f"one in {self.root / template / f'{STEM}.{EXT}'} (or {STEM}.<locale>.{EXT}); {DOCS}")
        mapping, compiled = self.mapping(name)
        section = mapping.section(provider)
        if section is None:
            raise TemplateError.single(
                f"no approved {provider} template: the file has no '{provider}' section", file=str(mapping.path),
                line=1, hint=f"add '{provider}:' with the template's code and params; {DOCS}")
        return mapping, section, compiled

    def fill(self, *, template: str, provider: str, locale: str | None, context: dict[str, Any]) -> ProviderTemplate:
        """The approved template for this customer: TemplateError, located, when it cannot be."""
        mapping, section, compiled = self._section(template, provider, locale)
        params = []
        for param, _, where in section.named():
            try:
                value = render_bounded(compiled[(provider, param)], context)
            except Exception as exc:  # noqa: BLE001 - each kind becomes a located TemplateError
                hint = BOUNDS_HINT if isinstance(exc, SecurityError) else VARIABLES_HINT
                raise TemplateError([mapping.problem(f"parameter '{param}': cannot render: {exc}", provider, *where,
                                                     hint=hint)]) from None
            params.append((param, value.strip()))
        return ProviderTemplate(provider=provider, code=section.code, sign_name=section.sign_name,
                                params=tuple(params))

    def verify(self, *, template: str, locale: str | None, filled: ProviderTemplate, reads: str,
               default_sign: str | None) -> list[Problem]:
        """What is wrong with a sample customer's filled template: a parameter
        past the provider's limits, no sign name, or a text that does not read
        as ``sms.txt`` (``reads``). Without ``text`` in the mapping: a warning."""
        mapping, section, _ = self._section(template, filled.provider, locale)
        provider, problems = filled.provider, []
        for (param, value), (_, _, where) in zip(filled.params, section.named(), strict=True):
            problems += [mapping.problem(f"parameter '{param}' {issue} (the sample customer's: {value!r})",
                                         provider, *where, hint=f"keep parameters within {provider}'s limits; {DOCS}")
                         for issue in section.value_problems(param, value)]
        sign = section.sign_name or default_sign
        if sign is None:
            problems.append(mapping.problem(
                "no sign name (签名)", provider, hint=f"set OUTREACH_{provider.upper()}_SIGN_NAME, or sign_name here"))
        if section.text is None:
            warning = mapping.problem(
                f"no approved text: cannot check that what {provider} sends reads as sms.txt", provider,
                hint="add text: with the template as the provider's console shows it")
            warning.severity = "warning"
            return [*problems, warning]
        if sign is not None:
            sent = as_read(sign, section.fill(dict(filled.params)))
            if sent != reads:
                problems.append(mapping.problem(
                    f"the approved template, filled for the sample customer, reads {sent!r} but "
                    f"{self._find(template, 'sms', 'txt', locale)} reads {reads!r}", provider, "text",
                    hint="sms.txt is what the customer reads (outbox, preview, cost): make it 【sign】 + the approved "
                         "text, with the same values as the parameters"))
            if len(sent) > MAX_TEXT:
                problems.append(mapping.problem(f"the message has {len(sent)} characters; at most {MAX_TEXT}",
                                                provider, "text", hint="shorten the text or the parameters"))
        return problems

"""Render a message: sandboxed Jinja → (MJML → HTML) with tracked links.

A template is a folder under ``templates/``::

    templates/winback/subject.txt        email subject (one line)
    templates/winback/email.mjml         MJML body
    templates/winback/email.txt          plain-text part (optional: derived from HTML)
    templates/winback/sms.txt            SMS body
    templates/winback/sms.zh_CN.txt      locale variant, chosen by customer.locale

Variables: ``customer`` (name, first_name, email, phone, locale,
customer_type, attributes, tags, birthday, external_id), ``rule`` (name,
description), ``message`` (id), ``unsubscribe_url``. An unknown variable is an
error (StrictUndefined), never an empty string in a customer's inbox.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from outreach.config import Settings
from outreach.domain import Channel
from outreach.errors import Problem, TemplateError
from outreach.sending import tokens
from outreach.store.models import Customer

#: Files a channel needs, relative to the template folder.
REQUIRED_FILES = {Channel.EMAIL: ("subject.txt", "email.mjml"), Channel.SMS: ("sms.txt",)}
_HREF = re.compile(r'href="(https?://[^"]+)"')
_TEXT_URL = re.compile(r"https?://[^\s<>\"')]+")
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Rendered:
    channel: Channel
    text: str
    subject: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def first_name(name: str) -> str:
    """Latin names: the first word. Chinese names: the whole name, as is polite."""
    name = name.strip()
    if _CJK.search(name):
        return name
    return name.split()[0] if name else ""


def customer_context(customer: Customer) -> dict[str, Any]:
    return {
        "external_id": customer.external_id,
        "name": customer.name,
        "first_name": first_name(customer.name),
        "email": customer.email,
        "phone": customer.phone,
        "locale": customer.locale,
        "customer_type": customer.customer_type.value,
        "attributes": dict(customer.attributes or {}),
        "tags": sorted(t.tag for t in customer.tags),
        "birthday": customer.birthday,
    }


class _TextExtractor(HTMLParser):
    BLOCK: ClassVar[frozenset[str]] = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "li", "table", "td"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.parts.append(f" {href} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return "\n".join(line for line in lines if line).strip()


def compile_mjml(source: str, *, file: str) -> str:
    import mrml

    try:
        return str(mrml.to_html(source).content)
    except Exception as exc:  # noqa: BLE001 - mrml raises its own parser error types
        raise TemplateError.single(
            f"MJML does not compile: {exc}",
            file=file,
            hint="check that every <mj-…> tag is closed and nested as MJML allows",
        ) from None


class Renderer:
    """Renders messages from ``settings.templates_dir``."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.templates_dir)
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.root)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.html_env = self.env.overlay(autoescape=True)

    # -------------------------------------------------------------- lookup
    def _pick(self, template: str, stem: str, ext: str, locale: str | None) -> str:
        candidates = []
        if locale:
            candidates.append(f"{template}/{stem}.{locale}.{ext}")
            if "_" in locale:
                candidates.append(f"{template}/{stem}.{locale.split('_')[0]}.{ext}")
        candidates.append(f"{template}/{stem}.{ext}")
        for name in candidates:
            if (self.root / name).is_file():
                return name
        raise TemplateError.single(
            f"template file '{stem}.{ext}' not found",
            file=str(self.root / template),
            hint=f"create {self.root / template / f'{stem}.{ext}'}",
        )

    def _render(self, name: str, context: dict[str, Any], *, html: bool = False) -> str:
        env = self.html_env if html else self.env
        path = str(self.root / name)
        try:
            return env.get_template(name).render(**context)
        except TemplateSyntaxError as exc:
            raise TemplateError.single(
                f"template syntax error: {exc.message}", file=path, line=exc.lineno,
                hint="check the {{ }} and {% %} tags",
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError.single(
                f"template '{exc.name}' not found", file=path, hint="check include/extends names"
            ) from None
        except Exception as exc:  # noqa: BLE001 - undefined variables, sandbox violations
            raise TemplateError.single(
                f"cannot render: {exc}",
                file=path,
                line=_template_line(exc, path),
                hint="variables available: customer.*, rule.*, message.id, unsubscribe_url",
            ) from None

    # -------------------------------------------------------------- render
    def render(
        self,
        *,
        template: str,
        channel: Channel,
        customer: Customer,
        message_id: int,
        rule: dict[str, Any],
    ) -> Rendered:
        unsubscribe = tokens.unsubscribe_url(self.settings, message_id)
        context = {
            "customer": customer_context(customer),
            "rule": rule,
            "message": {"id": message_id},
            "unsubscribe_url": unsubscribe,
        }
        locale = customer.locale
        if channel is Channel.SMS:
            body = self._render(self._pick(template, "sms", "txt", locale), context).strip()
            return Rendered(channel=channel, text=body)
        subject = " ".join(
            self._render(self._pick(template, "subject", "txt", locale), context).split()
        )
        mjml_name = self._pick(template, "email", "mjml", locale)
        html = compile_mjml(
            self._render(mjml_name, context, html=True), file=str(self.root / mjml_name)
        )
        try:
            text = self._render(self._pick(template, "email", "txt", locale), context).strip()
        except TemplateError as exc:
            if "not found" not in str(exc):
                raise
            text = html_to_text(html)
        html = self._track(html, message_id, unsubscribe)
        text = self._track_text(text, message_id, unsubscribe)
        headers = {
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return Rendered(channel=channel, text=text, subject=subject, html=html, headers=headers)

    def _track(self, html: str, message_id: int, unsubscribe: str) -> str:
        def swap(match: re.Match[str]) -> str:
            url = match.group(1).replace("&amp;", "&")
            if url == unsubscribe:
                return match.group(0)
            return f'href="{tokens.click_url(self.settings, message_id, url)}"'

        html = _HREF.sub(swap, html)
        pixel = (
            f'<img src="{tokens.open_pixel_url(self.settings, message_id)}" width="1" '
            'height="1" alt="" style="display:block;height:1px;width:1px;border:0" />'
        )
        if "</body>" in html:
            return html.replace("</body>", pixel + "</body>", 1)
        return html + pixel

    def _track_text(self, text: str, message_id: int, unsubscribe: str) -> str:
        def swap(match: re.Match[str]) -> str:
            url = match.group(0)
            if url == unsubscribe:
                return url
            return tokens.click_url(self.settings, message_id, url)

        return _TEXT_URL.sub(swap, text)

    # -------------------------------------------------------------- checks
    def check(self, template: str, channels: list[Channel], *, rule_file: str) -> list[Problem]:
        """Problems that would stop this template from rendering (for validate)."""
        problems: list[Problem] = []
        folder = self.root / template
        if not folder.is_dir():
            return [
                Problem(
                    f"template '{template}' not found",
                    file=rule_file,
                    field="template",
                    hint=f"create the folder {folder} or fix the name",
                )
            ]
        for channel in channels:
            for required in REQUIRED_FILES[channel]:
                if not (folder / required).is_file():
                    problems.append(
                        Problem(
                            f"template '{template}' has no {required} for channel {channel.value}",
                            file=str(folder / required),
                            hint=f"add {required} or remove '{channel.value}' from channels",
                        )
                    )
        for path in sorted(folder.iterdir()):
            if path.suffix in (".txt", ".mjml"):
                try:
                    self.env.parse(path.read_text(encoding="utf-8"))
                except TemplateSyntaxError as exc:
                    problems.append(
                        Problem(
                            f"template syntax error: {exc.message}",
                            file=str(path),
                            line=exc.lineno,
                            hint="check the {{ }} and {% %} tags",
                        )
                    )
        return problems


def _template_line(exc: BaseException, path: str) -> int | None:
    """Jinja rewrites tracebacks so template frames carry template lines."""
    tb = exc.__traceback__ or sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

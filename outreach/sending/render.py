"""Render a message: sandboxed Jinja → (MJML → HTML) with tracked links.

A template is a folder under ``templates/``::

    templates/winback/subject.txt        email subject (one line)
    templates/winback/email.mjml         MJML body
    templates/winback/email.txt          plain-text part (optional: derived from HTML)
    templates/winback/sms.txt            SMS body
    templates/winback/sms.zh_CN.txt      locale variant, chosen by customer.locale

Variables: ``customer`` (name, first_name, email, phone, locale,
customer_type, attributes, tags, birthday, external_id), ``rule`` (name,
description), ``message`` (id), ``unsubscribe_url``, ``preferences_url`` (the
customer's preference page: channels, topics, a break); for a rule triggered by
a custom event, ``event`` (name, occurred_at, properties — what the events
API or events.csv sent, e.g. ``event.properties.cart_url``); ``survey_url(score)``
(an answer link of a survey rule's message); for a rule with an ``offer:``,
``offer`` (code, discount, percent, amount, currency, expires, pool: the
message's own coupon code and its terms). An unknown
variable is an error (StrictUndefined), never an empty string in a
customer's inbox.
"""

from __future__ import annotations

import html
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError

from outreach.channels import ProviderTemplate, templates_for
from outreach.config import Settings
from outreach.domain import Channel
from outreach.errors import TemplateError
from outreach.sending import tokens
from outreach.sending.approved import ApprovedTemplates
from outreach.sending.plans import Bodies, slot_finalize
from outreach.sending.sandbox import BOUNDS_HINT, VARIABLES_HINT, BoundedSandbox, render_bounded
from outreach.sending.tracking import Tracker
from outreach.store.claims import Person
from outreach.store.models import Customer

_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Rendered:
    channel: Channel
    text: str
    subject: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: ``html`` as the pieces of its plan, (text, static): static pieces are
    #: the same objects for every message (``mime`` encodes each once).
    html_parts: tuple[tuple[str, bool], ...] | None = None
    template: ProviderTemplate | None = None  # SMS: the provider's approved template, filled


def first_name(name: str) -> str:
    """Latin names: the first word. Chinese names: the whole name, as is polite."""
    name = name.strip()
    if _CJK.search(name):
        return name
    return name.split()[0] if name else ""


def customer_context(customer: Customer | Person) -> dict[str, Any]:
    """What templates see as ``customer``: the same from a claimed message's
    :class:`~outreach.store.claims.Person` as from a ``Customer`` row."""
    tags = customer.tags if isinstance(customer, Person) else [t.tag for t in customer.tags]
    return {
        "external_id": customer.external_id,
        "name": customer.name,
        "first_name": first_name(customer.name),
        "email": customer.email,
        "phone": customer.phone,
        "locale": customer.locale,
        "customer_type": customer.customer_type.value,
        "attributes": dict(customer.attributes or {}),
        "tags": sorted(tags),
        "birthday": customer.birthday,
    }


#: What the plain-text part leaves out whole, what starts a line, and links.
_HIDDEN = re.compile(r"<(mj-head|head|style|script|title)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_LINK_OPEN = re.compile(r"<(?:a|mj-button)\b[^>]*?\bhref\s*=\s*(?:\"([^\"]*)\"|'([^']*)')[^>]*>", re.I)
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|br|tr|h[1-6]|li|table|td|mj-section|mj-column|mj-text|mj-button|mj-hero|mj-wrapper"
    r"|mj-divider|mj-table)\b[^>]*>", re.I)
_ANY_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)


def html_to_text(markup: str) -> str:
    """The plain-text part of an email from its HTML or — faster, with a
    tenth of the tags — its MJML source: a line per block, a link as its URL
    before its words, styles and the head left out."""
    text = _HIDDEN.sub("", markup)
    text = _LINK_OPEN.sub(lambda m: f" {m.group(1) if m.group(1) is not None else m.group(2)} ", text)
    text = _ANY_TAG.sub("", _BLOCK_TAG.sub("\n", text))
    lines = (" ".join(html.unescape(line).split()) for line in text.splitlines())
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


#: How long a template file lookup is remembered (seconds).
LOOKUP_TTL_S = 2.0


_renderers: dict[tuple[str, str, str, str], Renderer] = {}
_renderers_lock = threading.Lock()


def renderer_for(settings: Settings) -> Renderer:
    """One renderer per process, templates folder, public URL and secret:
    templates are read and compiled once, not per message."""
    key = (str(Path(settings.templates_dir).resolve()), settings.public_url, settings.require_secret(),
           settings.sms_transport)
    with _renderers_lock:
        found = _renderers.get(key)
        if found is None:
            found = _renderers[key] = Renderer(settings=settings)
        return found


class Renderer:
    """Renders messages from ``settings.templates_dir``."""

    def __init__(self, *, settings: Settings, plan_bodies: bool = True) -> None:
        """``plan_bodies``: email bodies from plans (``sending.plans``); off,
        each message's MJML is compiled (what plans are checked against)."""
        self.settings = settings
        self.root = Path(settings.templates_dir)
        # auto_reload off: Jinja would look at every file on every render;
        # _fresh() looks at the folder every LOOKUP_TTL_S instead.
        self.env = BoundedSandbox(
            loader=FileSystemLoader(str(self.root)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        self.html_env = self.env.overlay(autoescape=True)
        # The MJML body with a slot for each value (outreach.sending.plans).
        self.skeleton_env = self.html_env.overlay(finalize=slot_finalize)
        self.tracker = Tracker(settings)
        self.bodies = Bodies(self.tracker, environment=self.skeleton_env, enabled=plan_bodies)
        #: The provider of approved templates SMS go through (sms.providers.yaml), if any.
        self.sms_provider = templates_for(settings, "sms")
        self.approved = ApprovedTemplates(env=self.env, root=self.root, find=self._find)
        self._found: dict[tuple[str, str, str, str | None], str | None] = {}
        self._checked = 0.0
        self._signature: tuple[int, float] | None = None

    # -------------------------------------------------------------- lookup
    def _find(self, template: str, stem: str, ext: str, locale: str | None) -> str | None:
        """The file to use for a locale (``sms.zh_CN.txt``, then ``sms.zh.txt``,
        then ``sms.txt``), remembered until a file of the folder changes."""
        self._fresh()
        key = (template, stem, ext, locale)
        if key not in self._found:
            self._found[key] = self._look(template, stem, ext, locale)
        return self._found[key]

    def _fresh(self) -> None:
        """Templates are compiled once and reused; at most every
        ``LOOKUP_TTL_S`` the folder is looked at, and when a file was added,
        removed or edited the compiled templates and lookups are forgotten —
        edits take effect without a restart."""
        now = time.monotonic()
        if now - self._checked < LOOKUP_TTL_S:
            return
        self._checked = now
        signature = _tree_signature(self.root)
        if signature != self._signature:
            self._signature = signature
            self._found.clear()
            self.approved.clear()
            for env in (self.env, self.html_env, self.skeleton_env):
                if env.cache is not None:
                    env.cache.clear()
            self.bodies.clear()

    def _look(self, template: str, stem: str, ext: str, locale: str | None) -> str | None:
        candidates = []
        if locale:
            candidates.append(f"{template}/{stem}.{locale}.{ext}")
            if "_" in locale:
                candidates.append(f"{template}/{stem}.{locale.split('_')[0]}.{ext}")
        candidates.append(f"{template}/{stem}.{ext}")
        for name in candidates:
            if (self.root / name).is_file():
                return name
        return None

    def _pick(self, template: str, stem: str, ext: str, locale: str | None) -> str:
        name = self._find(template, stem, ext, locale)
        if name is not None:
            return name
        raise TemplateError.single(
            f"template file '{stem}.{ext}' not found",
            file=str(self.root / template),
            hint=f"create {self.root / template / f'{stem}.{ext}'}",
        )

    def _render(self, name: str, context: dict[str, Any], *, html: bool = False, env: Environment | None = None) -> str:
        env = env or (self.html_env if html else self.env)
        try:
            return render_bounded(env.get_template(name), context)
        except Exception as exc:  # noqa: BLE001 - each kind becomes a located TemplateError
            raise self._located(exc, name) from None

    def _located(self, exc: Exception, name: str) -> TemplateError:
        """What went wrong rendering ``name``, where, and how to fix it."""
        path = str(self.root / name)
        if isinstance(exc, TemplateSyntaxError):
            return TemplateError.single(f"template syntax error: {exc.message}", file=path, line=exc.lineno,
                                        hint="check the {{ }} and {% %} tags")
        if isinstance(exc, TemplateNotFound):
            return TemplateError.single(f"template '{exc.name}' not found", file=path,
                                        hint="check include/extends names")
        if isinstance(exc, SecurityError):
            return TemplateError.single(
                f"cannot render: {exc}", file=path, line=_template_line(exc, path),
                hint=BOUNDS_HINT)
        # Undefined variables, errors in filters.
        return TemplateError.single(
            f"cannot render: {exc}", file=path, line=_template_line(exc, path),
            hint=VARIABLES_HINT)

    # -------------------------------------------------------------- render
    def render(
        self,
        *,
        template: str,
        channel: Channel,
        customer: Customer | Person,
        message_id: int,
        rule: dict[str, Any],
        event: dict[str, Any] | None = None,
        offer: dict[str, Any] | None = None,
    ) -> Rendered:
        unsubscribe = tokens.unsubscribe_url(self.settings, message_id)
        preferences = tokens.preferences_url(self.settings, message_id)
        context = {
            "customer": customer_context(customer),
            "rule": rule,
            "message": {"id": message_id},
            "unsubscribe_url": unsubscribe,
            "preferences_url": preferences,
            # A survey rule's answer links: {{ survey_url(9) }} (the page asks before it records).
            "survey_url": lambda score: tokens.survey_url(self.settings, message_id, int(score)),
        }
        if event is not None:  # only an event rule's message has one: elsewhere `event` is undefined
            context["event"] = event
        if offer is not None:  # only an offer rule's message has a code: elsewhere `offer` is undefined
            context["offer"] = offer
        locale = customer.locale
        if channel is Channel.SMS:
            body = self._render(self._pick(template, "sms", "txt", locale), context).strip()
            approved = None if self.sms_provider is None else self.approved.fill(
                template=template, provider=self.sms_provider, locale=locale, context=context)
            return Rendered(channel=channel, text=body, template=approved)
        subject = " ".join(
            self._render(self._pick(template, "subject", "txt", locale), context).split()
        )
        mjml_name = self._pick(template, "email", "mjml", locale)
        # The unsubscribe and preference links are not clicks on the offer: never tracked.
        untracked = (unsubscribe, preferences)
        mjml, html, parts = self.bodies.body(
            key=mjml_name, message_id=message_id, untracked=untracked,
            render=lambda: self._render(mjml_name, context, html=True),
            skeleton=lambda: self._render(mjml_name, context, env=self.skeleton_env),
            compile=lambda source: compile_mjml(source, file=str(self.root / mjml_name)))
        text_name = self._find(template, "email", "txt", locale)
        text = self._render(text_name, context).strip() if text_name else html_to_text(mjml)
        text = self.tracker.text(text, message_id, untracked)
        headers = {
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        return Rendered(channel=channel, text=text, subject=subject, html=html, headers=headers, html_parts=parts)


def _tree_signature(root: Path) -> tuple[int, float]:
    """(files, latest change) of a templates folder: any edit changes it."""
    count, latest = 0, 0.0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                latest = max(latest, os.stat(os.path.join(folder, name)).st_mtime)
            except OSError:
                continue
            count += 1
    return count, latest


def _template_line(exc: BaseException, path: str) -> int | None:
    """Jinja rewrites tracebacks so template frames carry template lines."""
    tb = exc.__traceback__ or sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

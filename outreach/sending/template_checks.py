"""What ``rules validate`` checks in the template folder a rule names.

The files each channel needs are there, every ``.txt`` and ``.mjml`` parses,
every ``sms.providers*.yaml`` parses and its approved texts match their
parameters, and then every file renders for a sample customer in each locale
the folder has a file for: an undefined variable or a template past its
bounds is found now, not when a campaign sends. With ``sms_transport`` a
provider of approved templates only, each locale's SMS must map to one, its
parameters within the provider's limits, and (with the approved ``text``)
read exactly as ``sms.txt`` — otherwise the outbox, the preview and the cost
would say something else than the customer reads. A rule with an ``offer:``
renders with a sample code (a template that never shows ``offer.code`` is
warned about: each message would use up a code the customer never sees);
``offer`` in a rule without one is an error that says so.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from jinja2 import TemplateSyntaxError

from outreach.channels.approved import EXT, STEM, load_mapping, static_problems
from outreach.domain import Channel, CustomerType
from outreach.errors import Problem, TemplateError
from outreach.rules.offers import Offer
from outreach.sending.render import Renderer
from outreach.store.claims import Person

#: Files a channel needs, relative to the template folder.
REQUIRED_FILES = {Channel.EMAIL: ("subject.txt", "email.mjml"), Channel.SMS: ("sms.txt",)}
#: A locale variant of a template file: sms.zh_CN.txt, email.en.mjml, sms.providers.zh_CN.yaml.
LOCALE_FILE = re.compile(r"^(?:subject|email|sms|sms\.providers)\.([A-Za-z]{2,3}(?:_[A-Za-z0-9]+)?)"
                         r"\.(?:txt|mjml|yaml)$")
#: When the sample event of ``rules validate`` happened, and the sample code was given.
SAMPLE_TIME = datetime(2026, 1, 1, 12, 0)
#: The sample customer's coupon code (a rule with an offer).
SAMPLE_CODE = "SAMPLE7KQ4M9XT2C"
#: What Jinja says of ``offer`` in a rule without one.
_NO_OFFER = "'offer' is undefined"


class AnyProperty(dict[str, Any]):
    """The sample event's properties: any name has a value (a short text)."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def check_template(renderer: Renderer, template: str, channels: list[Channel], *, rule_file: str,
                   rule_name: str | None = None, event: str | None = None, field: str = "template",
                   line: int | None = None, offer: Offer | None = None) -> list[Problem]:
    """Problems that would stop this template from rendering or sending
    (warnings among them have ``severity="warning"``); ``event``: the rule's
    trigger is this custom event. ``field`` and ``line``: where the rule file
    names it (an A/B variant's ``variants.1.template``); ``offer``: the rule's offer."""
    folder = renderer.root / template
    if not folder.is_dir():
        return [Problem(f"template '{template}' not found", file=rule_file, field=field, line=line,
                        hint=f"create the folder {folder} or fix the name")]
    problems = [Problem(f"template '{template}' has no {required} for channel {channel.value}",
                        file=str(folder / required), hint=f"add {required} or remove '{channel.value}' from channels")
                for channel in channels for required in REQUIRED_FILES[channel] if not (folder / required).is_file()]
    for path in sorted(folder.iterdir()):
        if path.suffix in (".txt", ".mjml"):
            try:
                renderer.env.parse(path.read_text(encoding="utf-8"))
            except TemplateSyntaxError as exc:
                problems.append(Problem(f"template syntax error: {exc.message}", file=str(path), line=exc.lineno,
                                        hint="check the {{ }} and {% %} tags"))
        elif path.name.startswith(f"{STEM}.") and path.name.endswith(f".{EXT}"):
            try:
                problems += static_problems(load_mapping(path))
            except TemplateError as exc:
                problems += exc.problems
    return problems or _sample_renders(renderer, template, channels, rule_name or template, event, offer)


def _without_offer(problem: Problem) -> Problem:
    """``offer`` in a rule that has none, said so."""
    if _NO_OFFER not in problem.message:
        return problem
    return Problem(f"{problem.message}: the rule has no offer, so its messages carry no code", file=problem.file,
                   line=problem.line, hint="add 'offer: {pool: …, discount: …}' to the rule (docs/rules.md, "
                   "\"Offers\"), or remove offer.… from the template")


def _sample_renders(renderer: Renderer, template: str, channels: list[Channel], rule_name: str,
                    event: str | None, offer: Offer | None) -> list[Problem]:
    """Render for a sample customer in each locale the folder has a file for.
    An event rule's sample event has every property (their values are the sender's)."""
    locales = {"en"} | {match.group(1) for path in (renderer.root / template).iterdir()
                        if (match := LOCALE_FILE.match(path.name))}
    samples = [Person(external_id="sample", name="Sample Customer", email="sample@example.com",
                      phone="+8613800000000", locale=locale, customer_type=CustomerType.RETAIL,
                      attributes={}, tags=[], birthday=date(1990, 5, 17)) for locale in sorted(locales)]
    problems: list[Problem] = []
    for channel in channels:
        for sample in samples:
            try:
                rendered = renderer.render(
                    template=template, channel=channel, customer=sample, message_id=0,
                    rule={"name": rule_name, "description": ""},
                    event=None if event is None else {"name": event, "occurred_at": SAMPLE_TIME,
                                                      "properties": AnyProperty()},
                    offer=None if offer is None else offer.context(SAMPLE_CODE, offer.expires_on(SAMPLE_TIME)))
                if offer is not None and not any(SAMPLE_CODE in (part or "") for part in (
                        rendered.subject, rendered.text, rendered.html)):
                    hidden = Problem(f"the rule gives every {channel.value} message a coupon code, but template "
                                     f"'{template}' never shows it", file=str(renderer.root / template),
                                     severity="warning", hint="write {{ offer.code }} where the customer should "
                                     "read it, or remove 'offer:' from the rule")
                    problems += [hidden] if hidden not in problems else []
                if rendered.template is not None:
                    provider = rendered.template.provider
                    problems += [p for p in renderer.approved.verify(
                        template=template, locale=sample.locale, filled=rendered.template, reads=rendered.text,
                        default_sign=getattr(renderer.settings, f"{provider}_sign_name", None)) if p not in problems]
            except TemplateError as exc:
                found = exc.problems if offer is not None else [_without_offer(p) for p in exc.problems]
                problems += [p for p in found if p not in problems]
    return problems

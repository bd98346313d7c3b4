"""Email bodies from plans (compiled once per shape, filled per message) are
exactly the bodies compiled for each message — and go out encoded the same."""

from __future__ import annotations

import email
import email.policy
import string
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.channels.base import Envelope
from outreach.channels.mime import build
from outreach.config import load_settings
from outreach.domain import Channel, CustomerType
from outreach.sending.plans import transparent
from outreach.sending.render import Rendered, Renderer
from outreach.store.claims import Person

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("winback", "birthday", "upsell-teaware", "cart-abandoned")
#: Names as customers write them, and as an attacker would.
NAMES = st.one_of(
    st.sampled_from(["Ada Lovelace", "王小明", "O'Brien & Sons", '"Quoted" <b>bold</b>', "</body>",
                     'a href="https://evil.example"', "Zoë Ñandú", "x" * 400, "=3D=\n", ". dot", "  spaced  "]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40),
)


def renderer(templates: Path, *, plan_bodies: bool = True) -> Renderer:
    settings = load_settings(templates_dir=templates, public_url="https://t.example", secret_key="s")
    return Renderer(settings=settings, plan_bodies=plan_bodies)


def person(name: str, *, locale: str = "en", kind: CustomerType = CustomerType.RETAIL,
           attributes: dict[str, Any] | None = None) -> Person:
    return Person(external_id=f"C-{abs(hash(name)) % 1000}&x", name=name, email="ada@example.com",
                  phone="+447700900123", locale=locale, customer_type=kind, attributes=attributes or {},
                  tags=["vip"], birthday=date(1990, 12, 10))


def render(r: Renderer, template: str, customer: Person, message_id: int) -> Rendered:
    return r.render(template=template, channel=Channel.EMAIL, customer=customer, message_id=message_id,
                    rule={"name": template, "description": ""},
                    event={"name": "cart_abandoned", "occurred_at": date(2026, 1, 1),
                           "properties": {"cart_url": f"https://shop.example/cart?id={message_id}&x=1", "item_count": 2,
                                          "cart_value": "120.00", "currency": "CNY"}})


PLANNED = renderer(REPO / "templates")
COMPILED = renderer(REPO / "templates", plan_bodies=False)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(SHIPPED), name=NAMES, locale=st.sampled_from(["en", "zh_CN"]),
       kind=st.sampled_from(list(CustomerType)), message_id=st.integers(1, 10**12))
def test_a_planned_body_is_the_body_compiled_for_that_message(
    template: str, name: str, locale: str, kind: CustomerType, message_id: int
) -> None:
    customer = person(name, locale=locale, kind=kind)
    planned = render(PLANNED, template, customer, message_id)
    compiled = render(COMPILED, template, customer, message_id)
    assert planned.html == compiled.html
    assert (planned.subject, planned.text, planned.headers) == (compiled.subject, compiled.text, compiled.headers)
    assert compiled.html_parts is None
    if planned.html_parts is not None:
        assert "".join(text for text, _ in planned.html_parts) == planned.html


def test_after_the_first_message_of_a_shape_bodies_come_from_its_plan() -> None:
    r = renderer(REPO / "templates")
    first = render(r, "winback", person("Ada Lovelace"), 1)
    later = [render(r, "winback", person(name), i) for i, name in enumerate(["Bo", "王小明", "D'Arcy Smith"], start=2)]
    assert first.html_parts is None  # compiled, and its plan checked against it
    assert all(out.html_parts is not None for out in later)
    # The static pieces are the same objects from one message to the next (mime encodes each once)
    statics = [{id(text) for text, static in out.html_parts or () if static} for out in later]
    assert statics[0] == statics[1] == statics[2]
    assert "Hello D&#39;Arcy," in later[2].html and "https://t.example/c/" in later[2].html


def write(folder: Path, mjml: str) -> None:
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hi {{ customer.first_name }}")
    (folder / "email.txt").write_text("Hi")
    (folder / "email.mjml").write_text(f"<mjml><mj-body><mj-section><mj-column>{mjml}</mj-column></mj-section>"
                                       "</mj-body></mjml>")


def test_values_a_template_transforms_or_mjml_reads_are_compiled_each_time(tmp_path: Path) -> None:
    # Given templates where a value is changed after it is written (a filter block), sits in an
    # attribute MJML computes with (a width), or carries its own markup (|safe)
    write(tmp_path / "shout", "<mj-text>{% filter upper %}Hello {{ customer.name }}{% endfilter %}</mj-text>")
    write(tmp_path / "wide", '<mj-image width="{{ customer.attributes.width }}" src="https://i.example/a.png"/>')
    write(tmp_path / "bio", "<mj-text>{{ customer.attributes.bio|safe }}</mj-text>")
    planned, compiled = renderer(tmp_path), renderer(tmp_path, plan_bodies=False)
    for template, attributes in [("shout", {}), ("wide", {"width": "120px"}), ("wide", {"width": "300px"}),
                                 ("bio", {"bio": '<a href="https://a.example/x">me</a>'}),
                                 ("bio", {"bio": '<a href="https://b.example/y">you</a>'})]:
        for name in ("ada", "Bob"):
            customer = person(name, attributes=attributes)
            out = render(planned, template, customer, 5)
            # Then each message still gets exactly its own compiled body
            assert out.html == render(compiled, template, customer, 5).html
    assert "HELLO BOB" in render(planned, "shout", person("Bob"), 6).html
    assert "https://t.example/c/" in render(planned, "bio", person("x", attributes={"bio": '<a href="https://b.example/">'
                                                                                     "b</a>"}), 7).html


@pytest.mark.parametrize("source, expected", [
    ("<mj-text>Hi {{ customer.name }}</mj-text>", True),
    ('{% extends "base" %}{% block b %}{{ customer.name|upper }}{% endblock %}', True),
    ('{% include "base" %}{% if customer.name %}{{ customer.name }}{% endif %}', True),
    ("{% filter upper %}{{ customer.name }}{% endfilter %}", False),
    ("{% set x %}{{ customer.name }}{% endset %}{{ x|length }}", False),
    ("{% macro m() %}{{ customer.name }}{% endmacro %}{{ m()|upper }}", False),
    ('{% extends "base" %}{% block b %}{{ super()|upper }}{% endblock %}', False),
    ("{% autoescape false %}{{ customer.name }}{% endautoescape %}", False),
    ('{% import "base" as b %}{{ customer.name }}', False),
    ("{% include customer.attributes.part %}", False),
    ('{% extends "broken" %}', False),
])
def test_a_template_is_rendered_once_only_when_its_values_reach_the_output_unchanged(
    tmp_path: Path, source: str, expected: bool
) -> None:
    (tmp_path / "base").write_text("<mjml>{% block b %}{{ rule.name }}{% endblock %}</mjml>")
    (tmp_path / "broken").write_text("{% filter upper %}{% block b %}{% endblock %}{% endfilter %}")
    (tmp_path / "it").write_text(source)
    assert transparent(renderer(tmp_path).skeleton_env, "it") is expected


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.tuples(st.text(alphabet=string.printable + "=.é王 \t", max_size=300), st.booleans()),
                       min_size=1, max_size=8))
def test_an_html_body_in_pieces_is_encoded_as_the_whole_would_read(pieces: list[tuple[str, bool]]) -> None:
    html = "".join(text for text, _ in pieces)
    common = {"message_id": 1, "channel": "email", "to": "a@example.com", "text": "hi", "subject": "s",
              "idempotency_key": "outreach-msg-1"}
    whole = build(Envelope(html=html, **common), from_address="Shop <s@shop.example>")
    split = build(Envelope(html=html, html_parts=tuple(pieces), **common), from_address="Shop <s@shop.example>")

    def body(data: bytes) -> tuple[str, str, str]:
        message = email.message_from_bytes(data, policy=email.policy.default)
        [part] = [p for p in message.walk() if p.get_content_type() == "text/html"]
        return part["Content-Transfer-Encoding"], part.get_payload(decode=True).decode("utf-8"), part.get_payload()

    encoding, decoded, raw = body(split.data)
    assert (encoding, decoded) == body(whole.data)[:2]
    if encoding == "quoted-printable":  # RFC 2045: 76 characters a line, soft breaks included
        assert all(len(line) <= 76 for line in raw.splitlines())


OFFERED = renderer(REPO / "tests" / "fixtures" / "offer_templates")
OFFERED_COMPILED = renderer(REPO / "tests" / "fixtures" / "offer_templates", plan_bodies=False)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.from_regex(r"[A-Z0-9][A-Z0-9_.-]{2,63}", fullmatch=True), name=NAMES,
       discount=st.sampled_from(["15%", "12.5%", "20 CNY", "19.90 USD"]),
       expires=st.none() | st.dates(date(2026, 1, 1), date(2030, 12, 31)), message_id=st.integers(1, 10**12))
def test_a_planned_body_with_a_coupon_code_in_its_text_and_link_is_the_body_compiled_for_it(
    code: str, name: str, discount: str, expires: date | None, message_id: int
) -> None:
    offer = {"code": code, "discount": discount, "expires": expires}
    planned, compiled = (offered(r, person(name), message_id, offer) for r in (OFFERED, OFFERED_COMPILED))
    assert planned.html == compiled.html and planned.text == compiled.text and planned.subject == compiled.subject
    assert planned.html is not None and f"your code {code} takes" in planned.html
    if planned.html_parts is not None:
        assert "".join(text for text, _ in planned.html_parts) == planned.html


def offered(r: Renderer, customer: Person, message_id: int, offer: dict[str, Any]) -> Rendered:
    return r.render(template="spring", channel=Channel.EMAIL, customer=customer, message_id=message_id,
                    rule={"name": "spring", "description": ""}, offer=offer)


def test_after_the_first_message_codes_fill_the_plan_in_text_and_in_the_tracked_link() -> None:
    import re

    from outreach.sending import tokens

    r = renderer(REPO / "tests" / "fixtures" / "offer_templates")
    codes = ["SP15-7KQ4M9XT2C", "SP15-HHHHHHHHHH", "SHOP.CODE_9-X"]
    out = [offered(r, person("Ada"), n, {"code": c, "discount": "15%", "expires": None}) for n, c in enumerate(codes)]
    assert out[0].html_parts is None and out[1].html_parts is not None and out[2].html_parts is not None
    for n, (code, rendered) in enumerate(zip(codes, out, strict=True)):
        assert rendered.html is not None and f"your code {code} takes 15% off." in rendered.html
        links = {tokens.read_click_token(r.settings, t) for t in re.findall(r"/c/([A-Za-z0-9_.=-]+)", rendered.html)}
        assert (n, f"https://shop.example/redeem?code={code}") in links

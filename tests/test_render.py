"""Rendering: personalized, located template errors, locale variants."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from outreach.config import load_settings
from outreach.domain import Channel, CustomerType
from outreach.errors import TemplateError
from outreach.sending.render import Renderer, first_name, html_to_text
from outreach.sending.template_checks import check_template
from outreach.store.models import Customer, CustomerTag

REPO = Path(__file__).resolve().parents[1]


def customer(**kw: object) -> Customer:
    base = dict(id=7, external_id="C7", name="Ada Lovelace", email="ada@example.com", phone="+447700900123",
                locale="en", timezone="UTC", customer_type=CustomerType.RETAIL, attributes={"city": "London"},
                birthday=date(1990, 12, 10), created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1))
    base.update(kw)
    c = Customer(**base)
    c.tags = [CustomerTag(tag="vip")]
    return c


def renderer(templates: Path) -> Renderer:
    return Renderer(settings=load_settings(templates_dir=templates, public_url="https://t.example", secret_key="s"))


def test_shipped_email_is_personalized_tracked_and_has_unsubscribe() -> None:
    out = renderer(REPO / "templates").render(
        template="winback", channel=Channel.EMAIL, customer=customer(), message_id=42,
        rule={"name": "winback", "description": ""},
    )
    assert out.subject == "Ada, we saved your favourite tea for you"
    assert "Hello Ada" in out.html and "<html" in out.html
    assert out.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert out.headers["List-Unsubscribe"].startswith("<https://t.example/u/")
    assert 'href="https://shop.jadeleaf.example' not in out.html  # rewritten to /c/ redirects
    assert "https://t.example/c/" in out.html and "https://t.example/o/" in out.html
    assert "https://t.example/u/" in out.text


def test_locale_variant_is_chosen_for_chinese_customers() -> None:
    out = renderer(REPO / "templates").render(
        template="winback", channel=Channel.SMS, customer=customer(name="王小明", locale="zh_CN"),
        message_id=1, rule={"name": "winback", "description": ""},
    )
    assert out.text.startswith("【翠叶茶庄】王小明")


def test_unknown_variable_is_reported_with_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "sms.txt").write_text("Hi {{ customer.first_name }},\nyour code is {{ customer.coupon }}\n")
    with pytest.raises(TemplateError) as info:
        renderer(tmp_path).render(template="promo", channel=Channel.SMS, customer=customer(),
                                  message_id=1, rule={"name": "promo", "description": ""})
    problem = info.value.problems[0]
    assert problem.file == str(folder / "sms.txt") and problem.line == 2
    assert "coupon" in problem.message and "customer." in (problem.hint or "")


def test_syntax_error_is_reported_by_validate_with_line(tmp_path: Path) -> None:
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "sms.txt").write_text("line one\n{% if customer.name %}unclosed\n")
    problems = check_template(renderer(tmp_path), "promo", [Channel.SMS, Channel.EMAIL], rule_file="rules/promo.yaml")
    messages = [str(p) for p in problems]
    assert any("subject.txt" in m for m in messages)  # email files missing
    assert any("sms.txt" in m and "syntax" in m for m in messages)


def test_broken_mjml_is_a_template_error(tmp_path: Path) -> None:
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "subject.txt").write_text("Hi")
    (folder / "email.mjml").write_text("<mjml><mj-body><mj-section><mj-column><mj-text>unclosed")
    with pytest.raises(TemplateError) as info:
        renderer(tmp_path).render(template="promo", channel=Channel.EMAIL, customer=customer(),
                                  message_id=1, rule={"name": "promo", "description": ""})
    assert info.value.problems[0].file == str(folder / "email.mjml")


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "sms.txt").write_text("{{ customer.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        renderer(tmp_path).render(template="evil", channel=Channel.SMS, customer=customer(),
                                  message_id=1, rule={"name": "x", "description": ""})


@pytest.mark.parametrize("body, bound", [
    ("{{ 'x' * 10**9 }}", "repeating 1 items 1,000,000,000 times"),
    ("{{ [0] * 10**8 }}", "repeating"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loops take more than"),
    ("{{ 10 ** 100000 }}", "digits"),
    ("{{ 'x'|center(10**9) }}", "filter 'center'"),
    ("{{ 'x'.ljust(10**9) }}", "argument larger than"),
    ("{% for i in range(90000) %}{{ 'y' * 100 }}{% endfor %}", "output is longer than 1,000,000"),
])
def test_a_template_cannot_run_unbounded(tmp_path: Path, body: str, bound: str) -> None:
    # Given an SMS template that asks for gigabytes or billions of steps
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "sms.txt").write_text("Hi {{ customer.first_name }}\n" + body + "\n")
    # When it is rendered, it stops at its bound with a located error instead of running on
    with pytest.raises(TemplateError) as info:
        renderer(tmp_path).render(template="bomb", channel=Channel.SMS, customer=customer(),
                                  message_id=1, rule={"name": "x", "description": ""})
    problem = info.value.problems[0]
    assert bound in problem.message and problem.file == str(folder / "sms.txt") and "sandbox" in (problem.hint or "")
    assert problem.line == (None if "output" in bound else 2)  # the output's bound is no one line's
    # And rules validate finds it before any campaign sends (it renders for a sample customer)
    found = check_template(renderer(tmp_path), "bomb", [Channel.SMS], rule_file="rules/bomb.yaml", rule_name="bomb")
    assert any(bound in p.message for p in found)


def test_validate_renders_each_locale_for_a_sample_customer(tmp_path: Path) -> None:
    # Given a template whose Chinese variant uses a variable that does not exist
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "sms.txt").write_text("Hi {{ customer.first_name }}, reply STOP to opt out\n")
    (folder / "sms.zh_CN.txt").write_text("{{ customer.first_name }}，您的优惠码 {{ customer.coupon }}\n")
    # Then validate reports it, at its file and line, though the syntax is fine
    problems = check_template(renderer(tmp_path), "promo", [Channel.SMS], rule_file="rules/promo.yaml",
                              rule_name="promo")
    assert [(p.file, p.line) for p in problems] == [(str(folder / "sms.zh_CN.txt"), 1)]
    assert "coupon" in problems[0].message
    # And the shipped templates pass
    shipped = renderer(REPO / "templates")
    for name in ("winback", "birthday", "upsell-teaware"):
        assert check_template(shipped, name, [Channel.EMAIL, Channel.SMS], rule_file="x", rule_name=name) == []


def test_names_and_text_fallback() -> None:
    assert first_name("Ada Lovelace") == "Ada"
    assert first_name("王小明") == "王小明"
    assert html_to_text("<html><head><style>p{}</style></head><body><p>Hi</p><p>there</p></body></html>") == "Hi\nthere"

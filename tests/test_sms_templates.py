"""The approved-template mapping (``sms.providers.yaml``): filled per customer
in the templates' sandbox, and checked by ``rules validate`` with file,
line, field and a hint for the configured ``sms_transport``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach.config import load_settings
from outreach.domain import Channel
from outreach.errors import Problem, TemplateError
from outreach.sending.render import Renderer
from outreach.sending.template_checks import check_template
from test_cli import run
from test_render import customer

REPO = Path(__file__).resolve().parents[1]
SMS_ZH = "【翠叶茶庄】{{ customer.name }}，您的优惠码 {{ customer.attributes.get('coupon', 'TEA10') }}，回复TD退订\n"
MAPPING = """\
aliyun:
  template_code: SMS_100200300
  text: "${name}，您的优惠码 ${coupon}，回复TD退订"
  params:
    name: "{{ customer.name }}"
    coupon: "{{ customer.attributes.get('coupon', 'TEA10') }}"
tencent:
  template_id: 400500
  text: "{1}，您的优惠码 {2}，回复TD退订"
  params:
    - "{{ customer.name }}"
    - "{{ customer.attributes.get('coupon', 'TEA10') }}"
"""


def renderer(templates: Path, transport: str, **extra: Any) -> Renderer:
    return Renderer(settings=load_settings(templates_dir=templates, public_url="https://t.example", secret_key="s",
                                           sms_transport=transport, aliyun_sign_name="翠叶茶庄",
                                           tencent_sign_name="翠叶茶庄", **extra))


def folder_with(tmp_path: Path, mapping: str = MAPPING, sms: str = SMS_ZH) -> Path:
    """A template whose SMS (for every locale) is mapped in sms.providers.yaml."""
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "sms.txt").write_text(sms)
    (folder / "sms.providers.yaml").write_text(mapping)
    return folder


def problems(tmp_path: Path, transport: str) -> list[Problem]:
    return check_template(renderer(tmp_path, transport), "promo", [Channel.SMS], rule_file="rules/promo.yaml")


@pytest.mark.parametrize("transport, code, params", [
    ("aliyun", "SMS_100200300", (("name", "王小明"), ("coupon", "MOON8"))),
    ("tencent", "400500", (("1", "王小明"), ("2", "MOON8"))),
])
def test_the_customers_approved_template_is_filled_in_the_sandbox(
    tmp_path: Path, transport: str, code: str, params: tuple[tuple[str, str], ...]
) -> None:
    folder_with(tmp_path)
    out = renderer(tmp_path, transport).render(
        template="promo", channel=Channel.SMS, customer=customer(name="王小明", locale="zh_CN",
                                                                  attributes={"coupon": "MOON8"}),
        message_id=1, rule={"name": "promo", "description": ""})
    assert out.text == "【翠叶茶庄】王小明，您的优惠码 MOON8，回复TD退订"  # what the outbox records and costs
    assert out.template is not None
    assert (out.template.provider, out.template.code, out.template.params) == (transport, code, params)


def test_other_transports_send_the_text_and_fill_nothing(tmp_path: Path) -> None:
    folder_with(tmp_path)
    out = renderer(tmp_path, "twilio").render(template="promo", channel=Channel.SMS,
                                              customer=customer(locale="zh_CN"), message_id=1,
                                              rule={"name": "promo", "description": ""})
    assert out.template is None


@pytest.mark.parametrize("transport", ["aliyun", "tencent"])
def test_a_mapping_that_reproduces_sms_txt_is_valid(tmp_path: Path, transport: str) -> None:
    folder_with(tmp_path)
    assert (problems(tmp_path, transport)) == []


@pytest.mark.parametrize("transport", ["aliyun", "tencent"])
def test_the_shipped_chinese_templates_are_mapped_for_both_providers(transport: str) -> None:
    shipped = renderer(REPO / "templates", transport)
    for name in ("birthday", "upsell-teaware", "winback"):
        found = check_template(shipped, name, [Channel.SMS], rule_file="x", rule_name=name)
        # the English variant has no approved template: said once, for the en sample, where to add it
        assert [(Path(p.file or "").name, p.message) for p in found] == [
            (name, f"no approved {transport} template: sms.providers.yaml not found")]
        assert "sms.providers.yaml" in (found[0].hint or "")


def test_a_missing_section_for_the_configured_provider_is_located(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, mapping=MAPPING.split("tencent:")[0])
    [problem] = (problems(tmp_path, "tencent"))
    assert problem.file == str(folder / "sms.providers.yaml") and problem.line == 1
    assert "no 'tencent' section" in problem.message and "tencent:" in (problem.hint or "")


@pytest.mark.parametrize("mapping, line, field, message, hint", [
    (MAPPING.replace("SMS_100200300", "SMS-1"), 2, None, "not an Aliyun template code", "SMS_468120345"),
    (MAPPING.replace('    - "{{ customer.name }}"', "    - 5"), 11, None, "tencent.params.0", "in quotes"),
    (MAPPING.replace("    coupon: \"{{ customer.attributes.get('coupon', 'TEA10') }}\"\n", ""), 4, "aliyun.params",
     "variable 'coupon' has no parameter", "${name}"),
    (MAPPING.replace("{1}，", "{1}{2}，"), 9, "tencent.text", "side by side", "fixed text"),
    (MAPPING.replace("  template_id: 400500", "  templte_id: 400500"), 8, None, "unknown field 'templte_id'", None),
])
def test_a_malformed_mapping_is_reported_with_file_line_field_and_hint(
    tmp_path: Path, mapping: str, line: int, field: str | None, message: str, hint: str | None
) -> None:
    folder = folder_with(tmp_path, mapping=mapping)
    found = [p for p in problems(tmp_path, "aliyun") if message in p.message]
    assert found, problems(tmp_path, "aliyun")
    assert (found[0].file, found[0].line) == (str(folder / "sms.providers.yaml"), line)
    if field:
        assert found[0].field == field
    if hint:
        assert hint in (found[0].hint or "")


def test_an_unknown_variable_in_a_parameter_is_located_at_its_line(tmp_path: Path) -> None:
    folder_with(tmp_path, mapping=MAPPING.replace('name: "{{ customer.name }}"', 'name: "{{ customer.nickname }}"'))
    [problem] = (problems(tmp_path, "aliyun"))
    assert (problem.line, problem.field) == (5, "aliyun.params.name")
    assert "nickname" in problem.message and "customer." in (problem.hint or "")
    with pytest.raises(TemplateError, match="nickname"):  # and a send of it fails the same way
        renderer(tmp_path, "aliyun").render(template="promo", channel=Channel.SMS, customer=customer(locale="zh_CN"),
                                            message_id=1, rule={"name": "promo", "description": ""})


@pytest.mark.parametrize("transport, value, issue", [
    ("aliyun", "一二三四五六七八九十" * 4, "at most 35"),
    ("tencent", "https://shop.example/x", "is a link"),
    ("tencent", "", "is empty"),
])
def test_parameters_past_the_providers_documented_limits_are_errors(
    tmp_path: Path, transport: str, value: str, issue: str
) -> None:
    folder_with(tmp_path, mapping=MAPPING.replace("'TEA10'", f"'{value}'"),
                sms=SMS_ZH.replace("'TEA10'", f"'{value}'"))
    found = (problems(tmp_path, transport))
    assert [p.field for p in found] == [f"{transport}.params.coupon" if transport == "aliyun" else "tencent.params.1"]
    assert issue in found[0].message


def test_a_text_that_does_not_read_as_sms_txt_is_an_error_showing_both(tmp_path: Path) -> None:
    folder_with(tmp_path, sms=SMS_ZH.replace("回复TD退订", "拒收请回复R"))
    [problem] = (problems(tmp_path, "tencent"))
    assert problem.field == "tencent.text" and problem.line == 9
    assert "回复TD退订" in problem.message and "拒收请回复R" in problem.message
    assert "【sign】" in (problem.hint or "")


def test_without_the_approved_text_validate_warns_that_it_cannot_compare(tmp_path: Path) -> None:
    folder_with(tmp_path, mapping="\n".join(line for line in MAPPING.splitlines() if "text:" not in line) + "\n")
    [warning] = (problems(tmp_path, "aliyun"))
    assert warning.severity == "warning" and "no approved text" in warning.message


def test_rules_validate_reports_the_mapping_for_the_configured_transport(tmp_path: Path) -> None:
    # Given a rule sending SMS with a template whose mapping has a bad code, and Tencent configured
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "promo.yaml").write_text(
        "name: promo\ntrigger: {type: inactivity, days: 30}\ntemplate: promo\nchannels: [sms]\n")
    (tmp_path / "templates").mkdir()
    folder_with(tmp_path / "templates", mapping=MAPPING.replace("template_id: 400500", "template_id: T-1"))
    result = run("rules", "validate", "--no-db", cwd=tmp_path, env={"OUTREACH_SMS_TRANSPORT": "tencent"})
    # Then it names the file, line and field, with a hint, and fails
    assert result.returncode == 1, result.stdout
    assert ("templates/promo/sms.providers.yaml, line 8, column 3: tencent.template_id: 'T-1' is not a Tencent "
            "template id (hint: use the ID (digits) the console shows") in result.stderr
    assert "Traceback" not in result.stderr

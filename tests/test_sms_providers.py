"""Aliyun and Tencent Cloud SMS against local servers speaking their APIs.

Each server verifies the request's signature as its provider documents it
(ACS3-HMAC-SHA256, TC3-HMAC-SHA256), independently of the SDK that signed it:
a request the real API would refuse is refused here. One contract suite runs
against both providers; the tests after it cover what only one of them does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outreach.channels import Envelope, backend_for, check_settings, templates_for
from outreach.config import Settings, load_settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, ProviderUnavailable
from sms_providers import PROVIDERS, SIGN, WANG, WANG_READS, Account, provider_account
from test_channels import closed_port


@pytest.fixture
def make_settings(settings_env: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return load_settings(public_url="https://outreach.jadeleaf.example", **overrides)

    return build


@pytest.fixture(params=PROVIDERS)
def account(request: pytest.FixtureRequest) -> Iterator[Account]:
    with provider_account(request.param) as found:
        yield found


# ---------------------------------------------------------------- contract suite
def test_a_send_carries_the_approved_template_sign_parameters_and_number(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    # Given the winback template approved at the provider
    backend = backend_for(account.settings(make_settings), "sms")
    # When a message to Wang is delivered
    provider_id = backend.deliver(account.envelope())
    # Then the provider took exactly that template, sign and parameters, for his number, signed as documented
    [taken] = account.server.state.accepted
    assert provider_id == taken.provider_id and provider_id
    assert (taken.code, taken.sign_name, taken.phone) == (account.code, SIGN, account.on_the_wire(WANG))
    assert taken.text == WANG_READS
    assert taken.context == "outreach-msg-7"  # echoed in delivery reports (Aliyun's out_id)


def test_the_mappings_sign_name_wins_over_the_setting(make_settings: Callable[..., Settings],
                                                      account: Account) -> None:
    account.server.state.signs.add("翠叶茶庄会员")
    backend_for(account.settings(make_settings), "sms").deliver(account.envelope(sign_name="翠叶茶庄会员"))
    assert [m.sign_name for m in account.server.state.accepted] == ["翠叶茶庄会员"]


def test_a_wrong_secret_is_refused_by_the_signature_check_and_is_permanent(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    secret = "aliyun_access_key_secret" if account.provider == "aliyun" else "tencent_secret_key"
    backend = backend_for(account.settings(make_settings, **{secret: "not-the-secret"}), "sms")
    with pytest.raises(PermanentChannelError, match=f"hint: check {secret}"):
        backend.deliver(account.envelope())
    assert account.server.state.accepted == []


def test_throttling_is_retryable_for_the_whole_chunk_then_succeeds(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    # Given the provider throttles the next request, then answers a server error
    account.server.state.fail_next(1, account.throttled)
    account.server.state.fail_next(1, account.server_error)
    backend = backend_for(account.settings(make_settings), "sms")
    # Then both are outages the worker waits out (the rest of the chunk waits too) …
    for _ in range(2):
        with pytest.raises(ProviderUnavailable, match=account.throttled + "|" + account.server_error):
            backend.deliver(account.envelope())
    # … and the retry goes through, once
    assert backend.deliver(account.envelope())
    assert len(account.server.state.accepted) == 1


def test_an_empty_balance_is_an_outage_not_the_recipients_fault(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    account.server.state.fail_next(1, account.out_of_balance)
    with pytest.raises(ProviderUnavailable, match=r"hint: .*top up") as caught:
        backend_for(account.settings(make_settings), "sms").deliver(account.envelope())
    assert not isinstance(caught.value, PermanentChannelError)


def test_the_numbers_own_flow_control_retries_that_message_only(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    account.server.state.fail_next(1, account.number_limited)
    with pytest.raises(ChannelError, match=account.number_limited) as caught:
        backend_for(account.settings(make_settings), "sms").deliver(account.envelope())
    assert type(caught.value) is ChannelError
    if account.provider == "tencent":
        assert caught.value.retry_after == 30  # the thirty-second window


@pytest.mark.parametrize("case", ["invalid number", "unknown template", "unknown sign"])
def test_refusals_are_permanent_and_say_what_to_fix(
    make_settings: Callable[..., Settings], account: Account, case: str
) -> None:
    backend = backend_for(account.settings(make_settings), "sms")
    if case == "invalid number":
        account.server.state.invalid.add(account.on_the_wire("+8613900000009"))
        envelope, hint = account.envelope(to="+8613900000009"), "phone number is not valid"
    elif case == "unknown template":
        envelope = account.envelope(code="SMS_1" if account.provider == "aliyun" else "1")
        hint = "template is not approved"
    else:
        envelope, hint = account.envelope(sign_name="没有的签名"), "sign name is not approved"
    with pytest.raises(PermanentChannelError, match=f"hint: [^)]*{hint}"):
        backend.deliver(envelope)
    assert account.server.state.accepted == []


def test_a_number_not_in_e164_form_or_an_envelope_without_template_fails_before_any_request(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    backend = backend_for(account.settings(make_settings), "sms")
    with pytest.raises(PermanentChannelError, match=r"E\.164"):
        backend.deliver(account.envelope(to="138 0000 0001"))
    bare = Envelope(message_id=1, channel="sms", to=WANG, text=WANG_READS, idempotency_key="outreach-msg-1")
    with pytest.raises(PermanentChannelError, match=r"sms\.providers\.yaml"):
        backend.deliver(bare)
    assert account.server.state.requests == []


def test_an_unreachable_provider_is_an_outage(make_settings: Callable[..., Settings], account: Account) -> None:
    with closed_port() as port:
        endpoint = "aliyun_endpoint" if account.provider == "aliyun" else "tencent_endpoint"
        settings = account.settings(make_settings, **{endpoint: f"http://127.0.0.1:{port}"})
        with pytest.raises(ProviderUnavailable):
            backend_for(settings, "sms").deliver(account.envelope())


def test_a_missing_setting_stops_the_start_naming_it(make_settings: Callable[..., Settings], account: Account) -> None:
    options = account.options()
    missing = "aliyun_access_key_secret" if account.provider == "aliyun" else "tencent_sms_app_id"
    del options[missing]
    with pytest.raises(ConfigError, match=f"OUTREACH_{missing.upper()}"):
        check_settings(make_settings(**options))
    check_settings(account.settings(make_settings))  # complete: no error
    assert templates_for(account.settings(make_settings), "sms") == account.provider


# ---------------------------------------------------------------- one provider
def test_tencents_do_not_disturb_list_is_an_opt_out(make_settings: Callable[..., Settings]) -> None:
    # The number replied 退订 to the sign: Tencent refuses it, and the worker suppresses it
    with provider_account("tencent") as account:
        account.server.state.opted_out.add(WANG)
        with pytest.raises(PermanentChannelError) as caught:
            backend_for(account.settings(make_settings), "sms").deliver(account.envelope())
        assert caught.value.opted_out and "PhoneNumberInBlacklist" in str(caught.value)


def test_aliyun_takes_a_foreign_number_with_its_country_code(make_settings: Callable[..., Settings]) -> None:
    with provider_account("aliyun") as account:
        backend_for(account.settings(make_settings), "sms").deliver(account.envelope(to="+85261234567"))
        assert [m.phone for m in account.server.state.accepted] == ["85261234567"]


def test_aliyuns_daily_limit_waits_until_midnight_in_china(make_settings: Callable[..., Settings]) -> None:
    with provider_account("aliyun") as account:
        account.server.state.fail_next(1, "isv.DAY_LIMIT_CONTROL")
        with pytest.raises(ProviderUnavailable) as caught:
            backend_for(account.settings(make_settings), "sms").deliver(account.envelope())
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 86_400


def test_parameters_with_spaces_and_reserved_characters_are_signed_as_documented(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    # The canonical query (Aliyun) and payload hash (Tencent) must encode them as the provider does
    backend_for(account.settings(make_settings), "sms").deliver(account.envelope(values=("Ada L*~+%/ 王", "X Y&Z=1")))
    assert account.server.state.accepted[0].params in ({"name": "Ada L*~+%/ 王", "coupon": "X Y&Z=1"},
                                                       {"1": "Ada L*~+%/ 王", "2": "X Y&Z=1"})


@pytest.mark.parametrize("provider, module", [("aliyun", "alibabacloud_dysmsapi20170525"),
                                              ("tencent", "tencentcloud.sms.v20210111")])
def test_without_the_providers_sdk_the_start_says_how_to_install_it(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, provider: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    with provider_account(provider) as account, \
            pytest.raises(ConfigError, match=rf'pip install "outreach\[{provider}\]"'):
        check_settings(account.settings(make_settings))

"""The China SMS providers as the tests use them: one account at each local
server (credentials, the approved sign and templates), the settings that
point Outreach at it, and envelopes carrying an approved template.

    with provider_account("aliyun") as account:
        backend = backend_for(account.settings(make_settings), "sms")
        backend.deliver(account.envelope())
        assert account.server.state.accepted[0].text == "【翠叶茶庄】王小明，好久不见！…"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aliyun_server import aliyun_server
from outreach.channels import Envelope, ProviderTemplate
from outreach.config import Settings
from provider_server import ProviderServer
from tencent_server import tencent_server

PROVIDERS = ("aliyun", "tencent")
SIGN = "翠叶茶庄"
ALIYUN_CODE, TENCENT_ID = "SMS_468120345", "2118345"
#: The approved texts: the same message in each provider's variable syntax.
ALIYUN_TEXT = "${name}，好久不见！春茶到货，下单输入${coupon}享八五折。回复TD退订"
TENCENT_TEXT = "{1}，好久不见！春茶到货，下单输入{2}享八五折。回复TD退订"
WANG = "+8613800000001"
#: What Wang reads, whichever provider sends it.
WANG_READS = "【翠叶茶庄】王小明，好久不见！春茶到货，下单输入BACK15享八五折。回复TD退订"
ALIYUN_KEY = ("LTAI5tTestAccessKeyId01", "aliyun-test-access-key-secret-0123")
TENCENT_KEY = ("AKIDtestSecretId0123456789abcdefABCD", "tencent-test-secret-key-0123456789")
TENCENT_APP = "1400787878"


@dataclass
class Account:
    """One provider account at its local server."""

    provider: str
    server: ProviderServer

    @property
    def code(self) -> str:
        return ALIYUN_CODE if self.provider == "aliyun" else TENCENT_ID

    def options(self, **extra: Any) -> dict[str, Any]:
        """The settings that point Outreach at this account."""
        if self.provider == "aliyun":
            base = {"sms_transport": "aliyun", "aliyun_access_key_id": ALIYUN_KEY[0],
                    "aliyun_access_key_secret": ALIYUN_KEY[1], "aliyun_sign_name": SIGN,
                    "aliyun_endpoint": self.server.url}
        else:
            base = {"sms_transport": "tencent", "tencent_secret_id": TENCENT_KEY[0],
                    "tencent_secret_key": TENCENT_KEY[1], "tencent_sms_app_id": TENCENT_APP,
                    "tencent_sign_name": SIGN, "tencent_endpoint": self.server.url}
        return base | extra

    def settings(self, make: Callable[..., Settings], **extra: Any) -> Settings:
        return make(**self.options(**extra))

    def template(self, values: tuple[str, ...] = ("王小明", "BACK15"), *, code: str | None = None,
                 sign_name: str | None = None) -> ProviderTemplate:
        names = ("name", "coupon") if self.provider == "aliyun" else ("1", "2")
        return ProviderTemplate(provider=self.provider, code=code or self.code, sign_name=sign_name,
                                params=tuple(zip(names, values, strict=True)))

    def envelope(self, *, to: str = WANG, message_id: int = 7, **template: Any) -> Envelope:
        return Envelope(message_id=message_id, channel="sms", to=to, text=WANG_READS,
                        idempotency_key=f"outreach-msg-{message_id}", template=self.template(**template))

    def on_the_wire(self, e164: str) -> str:
        """How the provider receives a number: Aliyun national for the mainland, Tencent E.164."""
        return e164.removeprefix("+86") if self.provider == "aliyun" else e164

    #: Injectable errors: the provider's own codes for the same situations.
    @property
    def throttled(self) -> str:
        return "Throttling.User" if self.provider == "aliyun" else "RequestLimitExceeded"

    @property
    def out_of_balance(self) -> str:
        if self.provider == "aliyun":
            return "isv.AMOUNT_NOT_ENOUGH"
        return "FailedOperation.InsufficientBalanceInSmsPackage"

    @property
    def number_limited(self) -> str:
        if self.provider == "aliyun":
            return "isv.BUSINESS_LIMIT_CONTROL"
        return "LimitExceeded.PhoneNumberThirtySecondLimit"

    @property
    def server_error(self) -> str:
        return "ServiceUnavailable" if self.provider == "aliyun" else "InternalError.Timeout"


@contextmanager
def provider_account(provider: str) -> Iterator[Account]:
    """A local server of ``provider`` with the shop's account: the sign and the winback template approved."""
    if provider == "aliyun":
        with aliyun_server(access_key_id=ALIYUN_KEY[0], access_key_secret=ALIYUN_KEY[1], signs={SIGN},
                           templates={ALIYUN_CODE: ALIYUN_TEXT}) as server:
            yield Account(provider, server)
    else:
        with tencent_server(secret_id=TENCENT_KEY[0], secret_key=TENCENT_KEY[1], app_id=TENCENT_APP, signs={SIGN},
                            templates={TENCENT_ID: TENCENT_TEXT}) as server:
            yield Account(provider, server)

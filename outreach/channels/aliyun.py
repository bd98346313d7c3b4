"""SMS through Aliyun (Alibaba Cloud) SMS: Dysmsapi 2017-05-25 ``SendSms``.

Aliyun sends only approved templates: the envelope's
:class:`~outreach.channels.base.ProviderTemplate` gives ``TemplateCode``,
``SignName`` (the mapping's, else ``aliyun_sign_name``) and
``TemplateParam`` (a JSON object of strings); ``PhoneNumbers`` is the
national number for the mainland (``13800000001``) and country code +
number elsewhere; ``OutId`` is our message id (``outreach-msg-N``), which
Aliyun echoes in its delivery reports. Aliyun's ``BizId`` is the provider id.

The request goes through Aliyun's own SDK (the extra ``outreach[aliyun]``:
``alibabacloud-dysmsapi20170525``), which signs it (ACS3-HMAC-SHA256) and
can be pointed at any endpoint (``aliyun_endpoint``; the tests' local server
verifies the signature as Aliyun documents it). The SDK retries nothing here:
the worker's backoff does.

How a failure is classified:

* throttling (``Throttling*``), the account's balance or daily/monthly limit
  (``isv.AMOUNT_NOT_ENOUGH``, ``isv.OUT_OF_SERVICE``, ``isv.DAY_LIMIT_CONTROL``
  …), 5xx, timeouts and network errors → ProviderUnavailable: the whole chunk
  waits (an empty balance is an outage, not the recipient's fault);
* the per-number flow control (``isv.BUSINESS_LIMIT_CONTROL``) → ChannelError:
  this message is tried again later;
* anything else (an invalid number, a template or sign not approved, bad
  parameters, wrong credentials) → PermanentChannelError, with a hint.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

from outreach.channels.approved import template_of
from outreach.channels.base import Envelope, ProviderTemplate
from outreach.channels.china import aliyun_number, seconds_to_midnight
from outreach.config import Settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, ProviderUnavailable

#: Milliseconds the SDK waits to connect and for an answer.
CONNECT_TIMEOUT_MS = 5_000
READ_TIMEOUT_MS = 15_000
INSTALL_HINT = 'install Aliyun\'s SDK: pip install "outreach[aliyun]"'
#: Codes that say the account cannot send now; the rest of the chunk waits too.
UNAVAILABLE = frozenset({
    "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL",
    "isp.SYSTEM_ERROR", "ServiceUnavailable", "InternalError",
})
#: Limits that reset at midnight in China: the retry waits until then.
DAILY = frozenset({"isv.DAY_LIMIT_CONTROL"})
#: Codes about this recipient only, worth trying again later.
RETRY_LATER = frozenset({"isv.BUSINESS_LIMIT_CONTROL"})
HINTS = {
    "isv.MOBILE_NUMBER_ILLEGAL": "the customer's phone number is not valid; fix it in the customer data",
    "isv.SMS_TEMPLATE_ILLEGAL": "the template is not approved or not this account's: check template_code "
                                "in the template's sms.providers.yaml",
    "isv.SMS_SIGNATURE_ILLEGAL": "the sign name is not approved: check aliyun_sign_name or the mapping's sign_name",
    "isv.SIGN_STATE_ILLEGAL": "the sign name is not usable: see its state in the Aliyun console",
    "isv.TEMPLATE_MISSING_PARAMETERS": "the mapping's params miss a variable of the approved template",
    "isv.TEMPLATE_PARAMS_ILLEGAL": "a parameter is not what the template's variable accepts",
    "isv.PARAM_LENGTH_LIMIT": "a parameter is longer than Aliyun allows (35 characters)",
    "isv.AMOUNT_NOT_ENOUGH": "top up the Aliyun account; the messages wait and are tried again",
    "isv.OUT_OF_SERVICE": "the Aliyun account is suspended (balance): top it up; the messages wait",
    "isv.DAY_LIMIT_CONTROL": "the daily limit set in the console is reached; the messages wait for tomorrow",
    "isv.BUSINESS_LIMIT_CONTROL": "Aliyun's per-number flow control; this message is tried again later",
    "InvalidAccessKeyId.NotFound": "check aliyun_access_key_id",
    "SignatureDoesNotMatch": "check aliyun_access_key_secret",
    "isp.RAM_PERMISSION_DENY": "grant the access key's RAM user AliyunDysmsFullAccess",
}


def sdk() -> Any:
    """Aliyun's SDK modules, or a ConfigError saying how to install them."""
    try:
        from alibabacloud_dysmsapi20170525 import client, models
        from alibabacloud_tea_openapi import utils_models
        from darabonba import runtime
    except ImportError as exc:
        raise ConfigError(f"sms_transport is 'aliyun' but its SDK is missing ({exc.name}): {INSTALL_HINT}") from None
    return client, models, utils_models, runtime


class AliyunBackend:
    """Deliver approved-template SMS with Aliyun; provider id = the BizId."""

    name = "aliyun"
    channel = "sms"

    def __init__(self, *, access_key_id: str, access_key_secret: str, sign_name: str, endpoint: str) -> None:
        self.client_module, self.models, utils_models, runtime = sdk()
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        self.config = utils_models.Config(
            access_key_id=access_key_id, access_key_secret=access_key_secret, endpoint=url.netloc,
            protocol=url.scheme or "https", connect_timeout=CONNECT_TIMEOUT_MS, read_timeout=READ_TIMEOUT_MS)
        self.runtime = runtime.RuntimeOptions(connect_timeout=CONNECT_TIMEOUT_MS, read_timeout=READ_TIMEOUT_MS)
        self.sign_name = sign_name
        self._local = threading.local()  # one SDK client per worker thread

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunBackend:
        return cls(access_key_id=settings.require("aliyun_access_key_id"),
                   access_key_secret=settings.require("aliyun_access_key_secret"),
                   sign_name=settings.require("aliyun_sign_name"), endpoint=settings.require("aliyun_endpoint"))

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.client_module.Client(self.config)
        return client

    def request(self, envelope: Envelope, template: ProviderTemplate) -> dict[str, str]:
        """SendSms's parameters for one message."""
        return {
            "phone_numbers": aliyun_number(envelope.to),
            "sign_name": template.sign_name or self.sign_name,
            "template_code": template.code,
            "template_param": json.dumps(dict(template.params), ensure_ascii=False, separators=(",", ":")),
            "out_id": envelope.idempotency_key,
        }

    def deliver(self, envelope: Envelope) -> str:
        where = f"Aliyun SMS, message {envelope.message_id} to {envelope.to}"
        template = template_of(envelope, where, "aliyun")
        request = self.models.SendSmsRequest(**self.request(envelope, template))
        try:
            response = self._client().send_sms_with_options(request, self.runtime)
        except Exception as exc:  # noqa: BLE001 - the SDK's own exception types, classified below
            raise _sdk_error(exc, where) from None
        body = response.body
        if body is not None and body.code == "OK" and body.biz_id:
            return str(body.biz_id)
        code = body.code if body is not None else None
        raise _classified(str(code), body.message if body is not None else "no body", where,
                          request_id=getattr(body, "request_id", None))


def _classified(code: str, message: str, where: str, *, status: int | None = None,
                request_id: str | None = None, retry_after: float | None = None) -> ChannelError:
    text = f"{where}: " + (f"HTTP {status}, " if status else "") + f"Aliyun {code}: {message}"
    if request_id:
        text += f" (request {request_id})"
    if code in HINTS:
        text += f" (hint: {HINTS[code]})"
    if code in DAILY:
        retry_after = max(retry_after or 0.0, seconds_to_midnight())
    if code in UNAVAILABLE or code.startswith("Throttling") or (status is not None and status >= 500):
        return ProviderUnavailable(text, retry_after=retry_after)
    if code in RETRY_LATER:
        return ChannelError(text, retry_after=retry_after)
    return PermanentChannelError(text)


def _sdk_error(exc: Exception, where: str) -> ChannelError:
    """What an exception of Aliyun's SDK means for the message."""
    inner = getattr(exc, "inner_exception", None) or exc
    code = getattr(inner, "code", None)
    status = getattr(inner, "status_code", None)
    if code is None or status is None:  # no answer: refused, reset, timed out
        return ProviderUnavailable(f"{where}: {type(inner).__name__}: {getattr(inner, 'message', None) or inner}")
    waited = getattr(inner, "retry_after", None)  # x-acs-retry-after, in milliseconds
    data = getattr(inner, "data", None) or {}
    return _classified(str(code), str(data.get("Message") or getattr(inner, "message", "")), where,
                       status=int(status), request_id=getattr(inner, "request_id", None),
                       retry_after=waited / 1000 if isinstance(waited, int | float) else None)

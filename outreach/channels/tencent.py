"""SMS through Tencent Cloud SMS: ``SendSms``, API 3.0 (2021-01-11).

Tencent sends only approved templates: the envelope's
:class:`~outreach.channels.base.ProviderTemplate` gives ``TemplateId``,
``SignName`` (the mapping's, else ``tencent_sign_name``) and
``TemplateParamSet`` (strings, for ``{1}``, ``{2}`` …); ``PhoneNumberSet``
holds the number in E.164 (``+8613800000001``), ``SmsSdkAppId`` is
``tencent_sms_app_id`` and ``SessionContext`` our message id. The
``SerialNo`` of the number's ``SendStatus`` is the provider id (Tencent's
status callbacks name it as ``sid``).

The request goes through Tencent's own SDK (the extra ``outreach[tencent]``:
``tencentcloud-sdk-python-sms``), which signs it (TC3-HMAC-SHA256) for
``tencent_region``; ``tencent_endpoint`` points it elsewhere (the tests'
local server verifies the signature as Tencent documents it).

How a failure is classified (a whole request's ``Error``, or the number's
``SendStatus.Code``):

* ``RequestLimitExceeded*``, ``InternalError*``, the account's daily limits
  (``LimitExceeded.DailyLimit``, ``LimitExceeded.App…DailyLimit``), an empty
  package or balance (``FailedOperation.InsufficientBalanceInSmsPackage``),
  network errors → ProviderUnavailable: the chunk waits;
* the number's own limits (``LimitExceeded.PhoneNumberThirtySecondLimit``,
  ``…OneHourLimit``, ``…DailyLimit``) → ChannelError, retried after that window;
* ``FailedOperation.PhoneNumberInBlacklist`` (the number replied 退订/TD) →
  PermanentChannelError marked opted out: the number is suppressed;
* anything else (an invalid number, a template or sign not approved, bad
  parameters, wrong credentials) → PermanentChannelError, with a hint.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

from outreach.channels.approved import template_of
from outreach.channels.base import Envelope
from outreach.channels.china import seconds_to_midnight
from outreach.config import Settings
from outreach.errors import ChannelError, ConfigError, PermanentChannelError, ProviderUnavailable

#: Seconds the SDK waits for an answer.
REQUEST_TIMEOUT = 15
INSTALL_HINT = 'install Tencent Cloud\'s SDK: pip install "outreach[tencent]"'
#: The number's own sending windows: seconds to wait (None: until midnight in China).
NUMBER_LIMITS: dict[str, float | None] = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600,
    "LimitExceeded.PhoneNumberDailyLimit": None,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": None,
}
#: Code prefixes that say the account cannot send now (the chunk waits too).
UNAVAILABLE_PREFIXES = ("RequestLimitExceeded", "InternalError", "LimitExceeded.DailyLimit",
                        "LimitExceeded.AppDailyLimit", "LimitExceeded.AppGlobalDailyLimit",
                        "LimitExceeded.AppMainlandChinaDailyLimit", "LimitExceeded.AppCountryOrRegionDailyLimit",
                        "FailedOperation.InsufficientBalanceInSmsPackage", "ClientNetworkError",
                        "ServerNetworkError")
#: The number is on Tencent's do-not-disturb list: it replied 退订 (or TD).
OPTED_OUT = "FailedOperation.PhoneNumberInBlacklist"
HINTS = {
    "InvalidParameterValue.IncorrectPhoneNumber": "the customer's phone number is not valid; fix it in the "
                                                  "customer data",
    "FailedOperation.TemplateIncorrectOrUnapproved": "the template is not approved or not this application's: "
                                                     "check template_id in the template's sms.providers.yaml",
    "FailedOperation.SignatureIncorrectOrUnapproved": "the sign name is not approved: check tencent_sign_name or "
                                                      "the mapping's sign_name",
    "InvalidParameterValue.TemplateParameterFormatError": "a parameter is not what the template's variable accepts",
    "FailedOperation.InsufficientBalanceInSmsPackage": "buy an SMS package or top up; the messages wait",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": "check tencent_sms_app_id (the SMS application's SdkAppId)",
    "AuthFailure.SecretIdNotFound": "check tencent_secret_id",
    "AuthFailure.SignatureFailure": "check tencent_secret_key",
    OPTED_OUT: "the number replied 退订 to your sign; it stays suppressed",
}


def sdk() -> Any:
    """Tencent Cloud's SDK modules, or a ConfigError saying how to install them."""
    try:
        from tencentcloud.common import credential
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.common.profile import client_profile, http_profile
        from tencentcloud.sms.v20210111 import models, sms_client
    except ImportError as exc:
        raise ConfigError(f"sms_transport is 'tencent' but its SDK is missing ({exc.name}): {INSTALL_HINT}") from None
    return credential, TencentCloudSDKException, client_profile, http_profile, models, sms_client


class TencentBackend:
    """Deliver approved-template SMS with Tencent Cloud; provider id = the SerialNo."""

    name = "tencent"
    channel = "sms"

    def __init__(self, *, secret_id: str, secret_key: str, app_id: str, sign_name: str, region: str,
                 endpoint: str) -> None:
        credential, self.sdk_error, client_profile, http_profile, self.models, self.sms_client = sdk()
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        http = http_profile.HttpProfile(protocol=url.scheme or "https", endpoint=url.netloc,
                                        reqTimeout=REQUEST_TIMEOUT)
        self.profile = client_profile.ClientProfile(httpProfile=http)
        self.credential = credential.Credential(secret_id, secret_key)
        self.app_id, self.sign_name, self.region = app_id, sign_name, region
        self._local = threading.local()  # one SDK client (and HTTP session) per worker thread

    @classmethod
    def from_settings(cls, settings: Settings) -> TencentBackend:
        return cls(secret_id=settings.require("tencent_secret_id"),
                   secret_key=settings.require("tencent_secret_key"),
                   app_id=str(settings.require("tencent_sms_app_id")), sign_name=settings.require("tencent_sign_name"),
                   region=settings.require("tencent_region"), endpoint=settings.require("tencent_endpoint"))

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.sms_client.SmsClient(self.credential, self.region, self.profile)
        return client

    def request(self, envelope: Envelope) -> dict[str, Any]:
        """SendSms's parameters for one message."""
        template = template_of(envelope, self._where(envelope), "tencent")
        return {
            "PhoneNumberSet": [envelope.to],
            "SmsSdkAppId": self.app_id,
            "SignName": template.sign_name or self.sign_name,
            "TemplateId": template.code,
            "TemplateParamSet": [value for _, value in template.params],
            "SessionContext": envelope.idempotency_key,
        }

    @staticmethod
    def _where(envelope: Envelope) -> str:
        return f"Tencent Cloud SMS, message {envelope.message_id} to {envelope.to}"

    def deliver(self, envelope: Envelope) -> str:
        where = self._where(envelope)
        request = self.models.SendSmsRequest()
        request.from_json_string(json.dumps(self.request(envelope), ensure_ascii=False))
        try:
            response = self._client().SendSms(request)
        except self.sdk_error as exc:
            raise _classified(str(exc.get_code()), str(exc.get_message())[:300], where,
                              request_id=exc.get_request_id()) from None
        statuses = response.SendStatusSet or []
        status = next((s for s in statuses if s.PhoneNumber == envelope.to), statuses[0] if statuses else None)
        if status is None:
            # Tencent may have accepted it: retrying could send a second copy.
            raise PermanentChannelError(f"{where}: no SendStatus in the answer (request {response.RequestId}); "
                                        "not retried, it may have been sent")
        if status.Code == "Ok" and status.SerialNo:
            return str(status.SerialNo)
        raise _classified(str(status.Code), str(status.Message), where, request_id=response.RequestId)


def _classified(code: str, message: str, where: str, *, request_id: str | None = None) -> ChannelError:
    text = f"{where}: Tencent {code}: {message}"
    if request_id:
        text += f" (request {request_id})"
    if code in HINTS:
        text += f" (hint: {HINTS[code]})"
    if code in NUMBER_LIMITS:
        return ChannelError(text, retry_after=NUMBER_LIMITS[code] or seconds_to_midnight())
    if code.startswith(UNAVAILABLE_PREFIXES):
        daily = "DailyLimit" in code
        return ProviderUnavailable(text, retry_after=seconds_to_midnight() if daily else None)
    return PermanentChannelError(text, opted_out=code == OPTED_OUT)

"""A real HTTP server speaking Tencent Cloud SMS ``SendSms`` (API 3.0,
version 2021-01-11), for tests.

``POST /`` with a JSON body and the headers ``X-TC-Action``,
``X-TC-Version``, ``X-TC-Timestamp``, ``X-TC-Region`` and an
``Authorization`` signed with ``TC3-HMAC-SHA256`` as Tencent documents it
("签名方法 v3"), verified here from scratch:

    CanonicalRequest = METHOD \\n / \\n (empty query) \\n CanonicalHeaders \\n SignedHeaders \\n
                       hex(SHA256(payload))
    CanonicalHeaders = each signed header "name:value\\n", name and value lowercase and trimmed,
                       sorted; content-type and host must be signed
    StringToSign     = "TC3-HMAC-SHA256" \\n timestamp \\n date/sms/tc3_request \\n
                       hex(SHA256(CanonicalRequest))
    Signature        = hex(HMAC(HMAC(HMAC(HMAC("TC3" + SecretKey, date), "sms"), "tc3_request"),
                                StringToSign))

where ``date`` is the UTC date of the timestamp, which must be within five
minutes of the server's clock (``AuthFailure.SignatureExpire``).

Answers as Tencent does: always HTTP 200 and ``{"Response": {…}}`` — an
``Error`` for the whole request, otherwise one ``SendStatus`` per number with
its ``Code`` (``Ok``) and ``SerialNo``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from provider_server import CLOCK_SKEW_S, Accepted, JsonHandler, ProviderServer, ProviderState, fill, serving

ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "sms"
VARIABLE = r"\{(\d+)\}"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
#: Errors of the whole request (Response.Error) this server can be asked to answer.
REQUEST_ERRORS = {
    "RequestLimitExceeded": "请求的次数超过了频率限制。",
    "InternalError.Timeout": "请求下发短信超时。",
    "FailedOperation.InsufficientBalanceInSmsPackage": "套餐包余量不足。",
    "FailedOperation.TemplateIncorrectOrUnapproved": "模板未审批或请求的内容与审核通过的模板内容不匹配。",
    "FailedOperation.SignatureIncorrectOrUnapproved": "签名未审批或格式错误。",
    "InvalidParameterValue.TemplateParameterFormatError": "验证码模板参数格式错误。",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": "SmsSdkAppId 校验失败。",
    "AuthFailure.SecretIdNotFound": "密钥不存在。",
    "AuthFailure.SignatureFailure": "签名错误。",
    "AuthFailure.SignatureExpire": "签名过期。",
}
#: Errors of one number (SendStatus.Code).
NUMBER_ERRORS = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": "单个手机号30秒内下发短信条数超过设定的上限。",
    "InvalidParameterValue.IncorrectPhoneNumber": "手机号格式错误。",
    "FailedOperation.PhoneNumberInBlacklist": "手机号在免打扰名单库中。",
}


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signature(secret_key: str, timestamp: int, canonical: str) -> str:
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    to_sign = "\n".join([ALGORITHM, str(timestamp), f"{date}/{SERVICE}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(method: str, headers: dict[str, str], signed: list[str], body: bytes) -> str:
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed)
    return "\n".join([method, "/", "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()])


class _Handler(JsonHandler):
    def answer(self, response: dict[str, Any]) -> None:
        self.reply(200, {"Response": {**response, "RequestId": str(uuid.uuid4())}})

    def error(self, code: str, message: str | None = None) -> None:
        self.answer({"Error": {"Code": code, "Message": message or REQUEST_ERRORS[code]}})

    def do_POST(self) -> None:
        state = self.server.state
        body = self.body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        state.requests.append({"headers": headers, "body": body})
        refused = self.verify(state, headers, body)
        if refused:
            return self.error(refused)
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            return self.error("InvalidAction", "接口不存在。")
        injected = state.take_failure()
        if injected in REQUEST_ERRORS:
            return self.error(injected)
        self.send_sms(state, json.loads(body), injected)

    def verify(self, state: ProviderState, headers: dict[str, str], body: bytes) -> str | None:
        match = re.fullmatch(rf"{ALGORITHM} Credential=([^/]+)/(\d{{4}}-\d\d-\d\d)/{SERVICE}/tc3_request, "
                             r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", headers.get("authorization", ""))
        if not match:
            return "AuthFailure.SignatureFailure"
        secret_id, date, signed_names, given = match.groups()
        if secret_id != state.key_id:
            return "AuthFailure.SecretIdNotFound"
        signed = signed_names.split(";")
        if not {"content-type", "host"} <= set(signed) or signed != sorted(signed) or not set(signed) <= set(headers):
            return "AuthFailure.SignatureFailure"
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return "AuthFailure.SignatureFailure"
        if abs(time.time() - timestamp) > CLOCK_SKEW_S:
            return "AuthFailure.SignatureExpire"
        if date != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d"):
            return "AuthFailure.SignatureFailure"
        expected = signature(state.key_secret, timestamp, canonical_request(self.command, headers, signed, body))
        return None if hmac.compare_digest(given, expected) else "AuthFailure.SignatureFailure"

    def send_sms(self, state: ProviderState, request: dict[str, Any], injected: str | None) -> None:
        if request.get("SmsSdkAppId") != state.app_id:
            return self.error("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
        sign, code = request.get("SignName"), str(request.get("TemplateId"))
        if sign not in state.signs:
            return self.error("FailedOperation.SignatureIncorrectOrUnapproved")
        if code not in state.templates:
            return self.error("FailedOperation.TemplateIncorrectOrUnapproved")
        values = request.get("TemplateParamSet") or []
        text = state.templates[code]
        if not all(isinstance(v, str) for v in values) or len(values) != len(set(re.findall(VARIABLE, text))):
            return self.error("InvalidParameterValue.TemplateParameterFormatError", "模板参数个数或格式错误。")
        named = {str(index + 1): value for index, value in enumerate(values)}
        statuses = []
        for number in request.get("PhoneNumberSet") or []:
            failure = injected or ("InvalidParameterValue.IncorrectPhoneNumber"
                                   if not _E164.match(number) or number in state.invalid else
                                   "FailedOperation.PhoneNumberInBlacklist" if number in state.opted_out else None)
            status = {"SerialNo": "", "PhoneNumber": number, "Fee": 0, "SessionContext": "",
                      "Code": failure or "Ok", "Message": NUMBER_ERRORS.get(failure or "", "send success"),
                      "IsoCode": "CN" if number.startswith("+86") else "DEF"}
            if failure is None:
                status["SerialNo"] = f"2433:{secrets.randbelow(10**20):020d}"
                status["Fee"] = 1
                status["SessionContext"] = request.get("SessionContext", "")
                state.accept(Accepted(phone=number, sign_name=str(sign), code=code, params=named,
                                      text=f"【{sign}】{fill(text, named, VARIABLE)}", provider_id=status["SerialNo"],
                                      context=request.get("SessionContext")))
            statuses.append(status)
        self.answer({"SendStatusSet": statuses})


@contextmanager
def tencent_server(*, secret_id: str, secret_key: str, app_id: str, signs: set[str],
                   templates: dict[str, str]) -> Iterator[ProviderServer]:
    """Serve the fake Tencent Cloud SMS API on 127.0.0.1 for the ``with`` block."""
    state = ProviderState(key_id=secret_id, key_secret=secret_key, signs=signs, templates=templates, app_id=app_id)
    with serving(state, _Handler, "fake-tencent") as server:
        yield server

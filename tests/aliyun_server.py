"""A real HTTP server speaking Aliyun's Dysmsapi ``SendSms``, for tests.

``POST /?PhoneNumbers=…&SignName=…&TemplateCode=…&TemplateParam=…&OutId=…``
with the RPC action and version in ``x-acs-action`` / ``x-acs-version``,
signed with the V3 signature ``ACS3-HMAC-SHA256`` as Aliyun documents it
("V3版本请求体&签名机制"), verified here from scratch:

    CanonicalRequest = METHOD \\n CanonicalURI (/) \\n CanonicalQueryString \\n
                       CanonicalHeaders \\n SignedHeaders \\n HashedRequestPayload
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(SHA256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))

The query is sorted by name and each name and value RFC 3986-encoded (space
as %20, ``*`` as %2A, ``~`` kept); the canonical headers are ``host``,
``content-type`` and every ``x-acs-*`` header, lowercase, trimmed, sorted,
each ``name:value\\n``, and all of them must be signed; the payload hash is
the ``x-acs-content-sha256`` header and must be the body's. A date off by
more than 15 minutes, or a nonce seen before, is refused.

Answers as Aliyun does: a gateway error (signature, throttling, 5xx) is an
HTTP error with ``{"Code", "Message", "RequestId"}``; a business error is
HTTP 200 with its ``Code`` (``isv.…``); success is ``{"Code": "OK",
"BizId": …}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

from provider_server import Accepted, JsonHandler, ProviderServer, ProviderState, fill, serving

ALGORITHM = "ACS3-HMAC-SHA256"
#: Aliyun refuses a signed date more than 15 minutes from its clock.
MAX_SKEW_S = 15 * 60
#: Headers every V3 request signs.
MUST_SIGN = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
VARIABLE = r"\$\{([^}]*)\}"
_NUMBER = re.compile(r"^(?:\+86|0086|86)?(1\d{10})$|^(\d{8,15})$")
#: Injectable errors: code → (HTTP status, message).
ERRORS = {
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "isv.BUSINESS_LIMIT_CONTROL": (200, "触发号码天级流控Permits:10"),
    "isv.AMOUNT_NOT_ENOUGH": (200, "账户余额不足"),
    "isv.DAY_LIMIT_CONTROL": (200, "触发日发送限额"),
    "isv.MOBILE_NUMBER_ILLEGAL": (200, "非法手机号"),
    "isv.SMS_TEMPLATE_ILLEGAL": (200, "该账号下找不到对应模板"),
    "isv.SMS_SIGNATURE_ILLEGAL": (200, "该账号下找不到对应签名"),
    "isv.TEMPLATE_MISSING_PARAMETERS": (200, "模板变量缺少对应参数值"),
    "isv.INVALID_JSON_PARAM": (200, "JSON参数不合法，只接受字符串值"),
    "isv.PARAM_LENGTH_LIMIT": (200, "参数超出长度限制"),
}


def rfc3986(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_request(method: str, query: list[tuple[str, str]], headers: dict[str, str], signed: list[str],
                      payload_hash: str) -> str:
    canonical_query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(query))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    return "\n".join([method, "/", canonical_query, canonical_headers, ";".join(signed), payload_hash])


def signature(secret: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


class _Handler(JsonHandler):
    def fail(self, code: str) -> None:
        status, message = ERRORS[code]
        self.reply(status, {"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message,
                            "HostId": "dysmsapi.aliyuncs.com"})

    def do_POST(self) -> None:
        state = self.server.state
        body = self.body()
        query = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = dict(query)
        state.requests.append({"path": self.path, "headers": headers, "params": params})
        refused = self.verify(state, body, query, headers)
        if refused:
            return self.fail(refused)
        if headers.get("x-acs-action") != "SendSms" or headers.get("x-acs-version") != "2017-05-25":
            return self.reply(404, {"Code": "InvalidAction.NotFound", "Message": "Specified api is not found"})
        injected = state.take_failure()
        if injected:
            return self.fail(injected)
        self.send_sms(state, params)

    def verify(self, state: ProviderState, body: bytes, query: list[tuple[str, str]],
               headers: dict[str, str]) -> str | None:
        match = re.fullmatch(rf"{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{{64}})",
                             headers.get("authorization", ""))
        if not match:
            return "SignatureDoesNotMatch"
        key_id, signed_names, given = match.groups()
        if key_id != state.key_id:
            return "InvalidAccessKeyId.NotFound"
        signed = signed_names.split(";")
        needed = MUST_SIGN | {h for h in headers if h.startswith("x-acs-")} | ({"content-type"} & set(headers))
        if signed != sorted(signed) or not needed <= set(signed) or not set(signed) <= set(headers):
            return "SignatureDoesNotMatch"
        if headers["x-acs-content-sha256"] != hashlib.sha256(body).hexdigest():
            return "SignatureDoesNotMatch"
        expected = signature(state.key_secret, canonical_request(
            self.command, query, headers, signed, headers["x-acs-content-sha256"]))
        if not hmac.compare_digest(given, expected):
            return "SignatureDoesNotMatch"
        try:
            signed_at = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "InvalidTimeStamp.Expired"
        if abs((datetime.now(UTC) - signed_at).total_seconds()) > MAX_SKEW_S:
            return "InvalidTimeStamp.Expired"
        with state.lock:
            if headers["x-acs-signature-nonce"] in state.nonces:
                return "SignatureNonceUsed"
            state.nonces.add(headers["x-acs-signature-nonce"])
        return None

    def send_sms(self, state: ProviderState, params: dict[str, str]) -> None:
        number, sign, code = params.get("PhoneNumbers", ""), params.get("SignName", ""), params.get("TemplateCode", "")
        found = _NUMBER.match(number)
        if not found or number in state.invalid:
            return self.fail("isv.MOBILE_NUMBER_ILLEGAL")
        if sign not in state.signs:
            return self.fail("isv.SMS_SIGNATURE_ILLEGAL")
        if code not in state.templates:
            return self.fail("isv.SMS_TEMPLATE_ILLEGAL")
        try:
            values = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return self.fail("isv.INVALID_JSON_PARAM")
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return self.fail("isv.INVALID_JSON_PARAM")
        text = state.templates[code]
        if set(re.findall(VARIABLE, text)) - set(values):
            return self.fail("isv.TEMPLATE_MISSING_PARAMETERS")
        if any(not 1 <= len(v) <= 35 for v in values.values()):
            return self.fail("isv.PARAM_LENGTH_LIMIT")
        biz_id = f"{secrets.randbelow(10**18):018d}^0"
        state.accept(Accepted(phone=number, sign_name=sign, code=code, params=values,
                              text=f"【{sign}】{fill(text, values, VARIABLE)}", provider_id=biz_id,
                              context=params.get("OutId")))
        self.reply(200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": str(uuid.uuid4()).upper()})


@contextmanager
def aliyun_server(*, access_key_id: str, access_key_secret: str, signs: set[str],
                  templates: dict[str, str]) -> Iterator[ProviderServer]:
    """Serve the fake Dysmsapi on 127.0.0.1 for the ``with`` block."""
    state = ProviderState(key_id=access_key_id, key_secret=access_key_secret, signs=signs, templates=templates)
    with serving(state, _Handler, "fake-aliyun") as server:
        yield server

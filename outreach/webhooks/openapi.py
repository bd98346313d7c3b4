"""The webhook server's OpenAPI 3.1 description, made from the same
pydantic models that parse the bodies (so it cannot drift from them).

``serve`` answers it at ``/openapi.json``; ``docs/openapi.json`` is the same
document (a test checks they agree). Every endpoint is described with what
it answers, 4xx included: none of them answers 5xx for anything a sender can
send (``tests/test_webhooks_fuzz.py`` checks that with schemathesis) — only a
503 when the database (or, for SES, Amazon) cannot be reached, which the
provider retries.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from outreach.domain import Topic
from outreach.webhooks import aliyun, events, orders, preference_pages, signing, sms_push, tencent, twilio
from outreach.webhooks.esp import mailgun, postmark, sendgrid, ses

TITLE = "Outreach webhooks"
VERSION = "1"
REF = "#/components/schemas/{model}"

_JSON_ERRORS = {"application/json": {"schema": {"$ref": "#/components/schemas/Problems"}}}


def _signed_json(model: str, summary: str, description: str, ok: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "description": description,
        "parameters": [
            {"name": signing.TIMESTAMP_HEADER, "in": "header", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9]{1,10}$"}, "description": "Unix time of sending"},
            {"name": signing.SIGNATURE_HEADER, "in": "header", "required": True,
             "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
             "description": signing.SIGN_HINT},
        ],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}},
        "responses": {
            "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}},
            "401": {"description": "missing or wrong signature, or a replayed delivery (stores nothing)"},
            "413": {"description": f"the body is longer than {signing.MAX_BODY:,} bytes"},
            "422": {"description": "a bad value, named (stores nothing)", "content": _JSON_ERRORS},
        },
    }}


def _link(summary: str, ok: dict[str, Any], methods: tuple[str, ...] = ("get",)) -> dict[str, Any]:
    token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the signed token of the message's link"}
    return {method: {"summary": summary, "parameters": [token], "responses": ok} for method in methods}


def _twilio_form(summary: str, required: list[str], ok: dict[str, Any]) -> dict[str, Any]:
    fields = ["From", "To", "Body", "MessageSid", "MessageStatus", "ErrorCode", "AccountSid"]
    return {"post": {
        "summary": summary,
        "parameters": [{"name": twilio.SIGNATURE_HEADER, "in": "header", "required": True,
                        "schema": {"type": "string"},
                        "description": "HMAC-SHA1 of the full URL and the sorted form fields with the auth token"}],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": required,
            "properties": {name: {"type": "string"} for name in fields}}}}},
        "responses": {**ok, "400": {"description": "a signed request without a field it needs"},
                      "403": {"description": "a bad signature (stores nothing)"}},
    }}


#: Each ESP's feed: (path, provider, how it is authenticated).
ESP_FEEDS = (
    (ses.PATH, "Amazon SES through SNS", "SNS message signature (SignatureVersion 1 or 2) in the body"),
    (sendgrid.PATH, "SendGrid Event Webhook (a JSON array)",
     "ECDSA signature headers X-Twilio-Email-Event-Webhook-Signature / -Timestamp"),
    (mailgun.PATH, "Mailgun webhook", "HMAC-SHA256 `signature` object in the body; each token once"),
    (postmark.PATH, "Postmark webhook", "HTTP basic auth"),
)


def _esp(provider: str, auth: str) -> dict[str, Any]:
    return {"post": {
        "summary": f"{provider}: deliveries, bounces, complaints, opens, clicks, unsubscribes",
        "description": f"Authenticated by {auth}. Exists only when the provider's setting is configured.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": {
            "200": {"description": "stored (a retried report: stored once); unknown messages too"},
            "400": {"description": "a malformed report, the field named"},
            "401": {"description": "missing or wrong credentials (Postmark)"},
            "403": {"description": "a bad signature (stores nothing)"},
            "406": {"description": "a Mailgun token used before: a replay"},
            "413": {"description": f"the body is longer than {signing.MAX_BODY:,} bytes"},
            "503": {"description": "the database or Amazon's certificate host cannot be reached: retry"},
        },
    }}


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def _preference_paths(html: dict[str, Any]) -> dict[str, Any]:
    """The preference center: its page, its double opt-in request and confirmation link."""
    bad = {"400": {"description": "a tampered or unknown link, or a choice the page does not offer",
                   "content": html}}
    stale = {"403": {"description": "no nonce of this page, or one older than a day (changes nothing)",
                     "content": html}}
    busy = {"503": {"description": "the database cannot take it now: the page says to try again", "content": html}}
    nonce = {"nonce": {"type": "string", "description": "the signed nonce the page put in its form"}}
    on = {"type": "string", "enum": ["on"]}
    form = {**nonce, "channels_shown": {"type": "string", "description": "the channels the form showed ticked"},
            "topics_shown": {"type": "string"},
            **{f"channel_{c}": on for c in ("email", "sms")}, **{f"topic_{t.value}": on for t in Topic},
            "pause": {"type": "string", "enum": ["keep", "none", *map(str, preference_pages.PAUSE_DAYS)]}}
    page = _link("the preference page: shows, changes nothing", {"200": {"description": "the page", "content": html},
                                                                   **bad})
    save = _link("save the preference page's form", {
        "200": {"description": "saved (recorded, or durably queued on SQLite)", "content": html},
        **bad, **stale, **busy}, ("post",))
    save["post"]["requestBody"] = _form_body(form, ["nonce"])
    ask = _link("email a double opt-in link to the address on file", {
        "200": {"description": "sent", "content": html}, **bad, **stale,
        "409": {"description": "email is on already, there is no address, or it bounced", "content": html},
        "429": {"description": "three links sent in the last 24 hours already", "content": html},
        "503": {"description": "the database or the email provider cannot take it now", "content": html}},
        ("post",))
    ask["post"]["requestBody"] = _form_body({**nonce, "channel": {"type": "string", "enum": ["email"]}}, ["nonce"])
    refused = {"400": {"description": "a tampered or unknown link", "content": html},
               "409": {"description": "used already, or the address on file changed", "content": html},
               "410": {"description": "expired", "content": html}}
    return {
        "/p/{token}": {**page, **save},
        "/p/{token}/resubscribe": ask,
        "/r/{token}": {
            **_link("a double opt-in link's page: asks, changes nothing",
                    {"200": {"description": "the question", "content": html}, **refused}),
            **_link("confirm: consent granted again, with the evidence",
                    {"200": {"description": "confirmed", "content": html}, **refused, **busy}, ("post",)),
        },
    }


def _strings(*names: str, **others: Any) -> dict[str, Any]:
    return {**{name: {"type": "string"} for name in names}, **others}


#: The Chinese SMS providers' pushes: (path, summary, one item's schema, required fields, also a lone object).
SMS_PUSHES = (
    (aliyun.REPORT_PATH, "Aliyun SMS delivery reports (SmsReport, HTTP batch push)",
     _strings("phone_number", "send_time", "report_time", "err_code", "err_msg", "sms_size", "biz_id", "out_id",
              success={"type": "boolean"}), ["biz_id", "success"], False),
    (aliyun.REPLY_PATH, "Aliyun SMS replies (SmsUp, HTTP batch push): STOP, 退订, TD, R, START …",
     _strings("phone_number", "send_time", "content", "sign_name", "dest_code",
              sequence_id={"type": ["integer", "string"]}), ["phone_number", "content"], False),
    (tencent.REPORT_PATH, "Tencent Cloud SMS status callbacks",
     _strings("user_receive_time", "nationcode", "mobile", "report_status", "errmsg", "description", "sid"),
     ["sid", "report_status"], False),
    (tencent.REPLY_PATH, "Tencent Cloud SMS reply callbacks: STOP, 退订, TD, R, START …",
     _strings("extend", "mobile", "nationcode", "sign", "text", time={"type": "integer"}), ["mobile", "text"], True),
)


def _sms_push(summary: str, properties: dict[str, Any], required: list[str], lone: bool) -> dict[str, Any]:
    item = {"type": "object", "required": required, "properties": properties}
    batch: dict[str, Any] = {"type": "array", "minItems": 1, "maxItems": sms_push.MAX_ITEMS, "items": item}
    return {"post": {
        "summary": summary,
        "description": "Unsigned by the provider: the path's secret (aliyun_webhook_secret, tencent_webhook_secret) "
                       "authenticates it. Exists only when that secret is configured.",
        "parameters": [{"name": "secret", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "the push secret, compared in constant time"}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"oneOf": [item, batch]} if lone else batch}}},
        "responses": {
            "200": {"description": "received (a retried push is stored once); the provider's answer format"},
            "400": {"description": "not the provider's JSON: the reason, in the provider's answer format"},
            "404": {"description": "a wrong secret (stores nothing)"},
            "413": {"description": f"the body is longer than {signing.MAX_BODY:,} bytes"},
            "503": {"description": "the database cannot be reached: the provider pushes again"},
        },
    }}


def _components(*models: type[BaseModel]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problems": {"type": "object", "properties": {"errors": {"type": "array", "items": {
        "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                                         "hint": {"type": ["string", "null"]}}}}}}}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def describe() -> dict[str, Any]:
    """The OpenAPI document of every endpoint the server can have."""
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "What customers' mail clients, the shop, Twilio, Aliyun, Tencent Cloud and operators "
                                "send to `outreach serve`. Safe methods never change anything."},
        "paths": {
            "/u/{token}": {
                **_link("the unsubscribe page: asks, changes nothing",
                        {"200": {"description": "the question", "content": html},
                         "400": {"description": "a tampered or unknown link", "content": html}}),
                **_link("unsubscribe (the page's POST, or RFC 8058 one-click)",
                        {"200": {"description": "unsubscribed (recorded, or durably queued on SQLite)",
                                 "content": html},
                         "400": {"description": "a tampered or unknown link", "content": html}}, ("post",)),
            },
            "/s/{token}": {
                **_link("a survey answer link: the page asks, changes nothing",
                        {"200": {"description": "the question, with a comment box", "content": html},
                         "400": {"description": "a tampered link, or a score off the survey's scale",
                                 "content": html}}),
                **_link("record the answer (and an optional `comment` form field)",
                        {"200": {"description": "recorded; a second answer replaces the first", "content": html},
                         "400": {"description": "a tampered link, or a score off the survey's scale",
                                 "content": html}}, ("post",)),
            },
            **_preference_paths(html),
            "/o/{token}": _link("the open pixel (a HEAD records nothing)",
                                {"200": {"description": "a 1×1 GIF, always", "content": {"image/gif": {}}}}),
            "/c/{token}": _link("a tracked link (a HEAD records nothing)",
                                {"302": {"description": "to exactly the signed URL"},
                                 "400": {"description": "a tampered link", "content": html}}),
            orders.PATH: _signed_json("OrderIn", "an order from the shop",
                                      "One order; a delivery signed no later than the stored version changes "
                                      "nothing.", "the order's id; `unchanged` when an older version"),
            events.PATH: _signed_json("EventIn", "custom events (one, or a JSON array of at most "
                                      f"{events.MAX_EVENTS})", "Upserted by `id`; all or nothing.",
                                      "the stored events' ids"),
            twilio.INBOUND_PATH: _twilio_form("an incoming SMS (STOP, START, HELP, other replies)", ["From"],
                                              {"200": {"description": "TwiML", "content": {"text/xml": {}}}}),
            twilio.STATUS_PATH: _twilio_form("an SMS delivery status", ["MessageSid"],
                                             {"204": {"description": "recorded (or an intermediate status)"}}),
            **{path: _sms_push(summary, props, required, lone) for path, summary, props, required, lone in SMS_PUSHES},
            **{path: _esp(provider, auth) for path, provider, auth in ESP_FEEDS},
            "/healthz": {"get": {"summary": "the database answers",
                                 "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition format"}}}},
        },
        "components": {"schemas": _components(orders.OrderIn, events.EventIn)},
    }


def render() -> str:
    return json.dumps(describe(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m outreach.webhooks.openapi > docs/openapi.json
    print(render(), end="")

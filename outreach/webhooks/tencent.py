"""Tencent Cloud SMS's callbacks: delivery status reports and replies.

``POST /webhooks/tencent/{secret}/report`` takes the status callback — a JSON
array of ``{"user_receive_time", "nationcode", "mobile", "report_status",
"errmsg", "description", "sid"}`` — and
``POST /webhooks/tencent/{secret}/reply`` the reply callback — one JSON
object ``{"extend", "mobile", "nationcode", "sign", "text", "time"}`` (an
array of them is taken too). Both are answered ``{"result": 0, "errmsg": "OK"}``.

A report is a DELIVERED event (``report_status: SUCCESS``), a FAILED one
(``FAIL``) or UNKNOWN, of the message whose SerialNo is ``sid``. A reply's
number is ``nationcode`` + ``mobile``, matched in E.164. Set up in the SMS
console under 应用管理 → 回调配置; see :mod:`.sms_push` for the secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.routing import Route

from outreach.channels.china import e164_of
from outreach.config import Settings
from outreach.domain import EventType
from outreach.store.responses import DeliveryReport
from outreach.webhooks.esp.base import BadPayload, text
from outreach.webhooks.sms_push import Push, Reply, items, key, provider_routes, reply_text

REPORT_PATH = "/webhooks/tencent/{secret}/report"
REPLY_PATH = "/webhooks/tencent/{secret}/reply"
SOURCE = "tencent"
#: Tencent's report_status → our vocabulary; anything else becomes UNKNOWN.
STATUS_EVENTS = {"SUCCESS": EventType.DELIVERED, "FAIL": EventType.FAILED}
HINT = "post Tencent Cloud SMS's status callback (a JSON array) or reply callback (a JSON object)"


def answer(code: int, message: str) -> dict[str, Any]:
    return {"result": code, "errmsg": "OK" if code == 0 else message}


def parse_reports(data: Any) -> Push:
    reports = []
    for index, item in enumerate(items(data)):
        where = str(index)
        sid = text(item, "sid", where) or ""
        status = (text(item, "report_status", where) or "").upper()
        reports.append(DeliveryReport(
            type=STATUS_EVENTS.get(status, EventType.UNKNOWN), provider_id=sid, message_id=None, payload=item,
            dedupe_key=key(SOURCE, "report", sid, status, text(item, "errmsg", where, required=False))))
    return Push(reports=reports)


def parse_replies(data: Any) -> Push:
    replies = []
    for index, item in enumerate(items(data, single=True)):
        where = str(index) if isinstance(data, list) else ""
        mobile = text(item, "mobile", where) or ""
        phone = e164_of(mobile, nationcode=text(item, "nationcode", where, required=False) or "86")
        if phone is None:
            raise BadPayload(f"{where}.mobile".lstrip("."), f"'{mobile[:32]}' is not a phone number")
        content = reply_text(item, "text", where)
        sent = item.get("time") if isinstance(item.get("time"), int | str) else ""
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        replies.append(Reply(phone=phone, text=content, payload=item,
                             dedupe_key=key(SOURCE, "reply", phone, sent, digest)))
    return Push(replies=replies)


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    return provider_routes(settings, engine, clock, provider=SOURCE, paths=(REPORT_PATH, REPLY_PATH),
                           parsers=(parse_reports, parse_replies), answer=answer, hint=HINT)

"""Aliyun SMS's pushes (HTTP batch push mode): delivery reports and replies.

``POST /webhooks/aliyun/{secret}/report`` takes SmsReport — a JSON array of
``{"phone_number", "send_time", "report_time", "success", "err_code",
"err_msg", "sms_size", "biz_id", "out_id"}`` — and
``POST /webhooks/aliyun/{secret}/reply`` takes SmsUp — a JSON array of
``{"phone_number", "send_time", "content", "sign_name", "dest_code",
"sequence_id"}``. Both are answered ``{"code": 0, "msg": "接收成功"}``.

A report is a DELIVERED event (``success: true``) or a FAILED one, of the
message named by ``out_id`` (``outreach-msg-N``, which we send as OutId) or
by ``biz_id`` (the BizId SendSms answered). A reply's number is national for
the mainland (``1381111…``) and is matched in E.164. Set up in the console
under 通用设置 → 回执消息 (HTTP 批量推送); see :mod:`.sms_push` for the secret.
"""

from __future__ import annotations

import hashlib
import re
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

REPORT_PATH = "/webhooks/aliyun/{secret}/report"
REPLY_PATH = "/webhooks/aliyun/{secret}/reply"
SOURCE = "aliyun"
#: Our message id as we send it in OutId.
OUT_ID = re.compile(r"^outreach-msg-(\d{1,18})$")
HINT = "post Aliyun's SmsReport / SmsUp JSON array (HTTP batch push mode)"
RECEIVED = "接收成功"


def answer(code: int, message: str) -> dict[str, Any]:
    """Aliyun checks that ``code`` is a number; 0 is "received"."""
    return {"code": code, "msg": RECEIVED if code == 0 else message}


def parse_reports(data: Any) -> Push:
    reports = []
    for index, item in enumerate(items(data)):
        where = str(index)
        success = item.get("success")
        if isinstance(success, str) and success.lower() in ("true", "false"):
            success = success.lower() == "true"
        if not isinstance(success, bool):
            raise BadPayload(f"{where}.success", "expected true or false")
        biz_id = text(item, "biz_id", where) or ""
        out_id = OUT_ID.match(text(item, "out_id", where, required=False) or "")
        code = text(item, "err_code", where, required=False) or ""
        reports.append(DeliveryReport(
            type=EventType.DELIVERED if success else EventType.FAILED, provider_id=biz_id,
            message_id=int(out_id.group(1)) if out_id else None, payload=item,
            dedupe_key=key(SOURCE, "report", biz_id, text(item, "phone_number", where, required=False),
                           "ok" if success else code)))
    return Push(reports=reports)


def parse_replies(data: Any) -> Push:
    replies = []
    for index, item in enumerate(items(data)):
        where = str(index)
        number = text(item, "phone_number", where) or ""
        phone = e164_of(number)
        if phone is None:
            raise BadPayload(f"{where}.phone_number", f"'{number[:32]}' is not a phone number")
        content = reply_text(item, "content", where)
        sequence = item.get("sequence_id")
        if not isinstance(sequence, int | str) or isinstance(sequence, bool) or not str(sequence).strip():
            sequence = f"{text(item, 'send_time', where, required=False)}:" \
                       f"{hashlib.sha256(content.encode()).hexdigest()[:16]}"
        replies.append(Reply(phone=phone, text=content, payload=item, dedupe_key=key(SOURCE, "reply", phone, sequence)))
    return Push(replies=replies)


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    return provider_routes(settings, engine, clock, provider=SOURCE, paths=(REPORT_PATH, REPLY_PATH),
                           parsers=(parse_reports, parse_replies), answer=answer, hint=HINT)

"""The whole path through Aliyun and Tencent Cloud: `outreach run` plans a
rule with `channels: [sms]`, a worker renders the shipped winback template
and its approved-template mapping, and the provider's local server takes the
message — on SQLite (the embedded in-process worker) and on PostgreSQL
(Redis and an `outreach worker` process)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outreach.channels.sms import sms_segments
from outreach.domain import MessageStatus
from outreach.store.models import Customer, Message
from sms_providers import PROVIDERS, WANG, Account, provider_account
from test_redis_worker import OUTREACH, start_worker, stop_worker
from test_sending import REPO, shop

RULE = """\
name: winback-sms
trigger: {type: inactivity, days: 30}
template: winback
channels: [sms]
cost: {sms: 0.05}
"""
#: Inside the default SMS send window (09:00–21:00 in the customers' time zone, UTC).
FIRST_RUN, SECOND_RUN = "2026-06-01T10:00:00Z", "2027-01-04T10:00:00Z"
LI = "+8613900000002"
WANG_READS = "【翠叶茶庄】王小明，好久不见！春茶到货，下单输入BACK15享八五折。回复TD退订"
#: How long the worker may take to settle a handful of messages.
DEADLINE_S = 60


@pytest.fixture(params=PROVIDERS)
def account(request: pytest.FixtureRequest) -> Iterator[Account]:
    with provider_account(request.param) as found:
        # The shop's winback template is the one approved in this account (the shipped mapping names it)
        mapping = yaml.safe_load((REPO / "templates" / "winback" / "sms.providers.zh_CN.yaml").read_text())
        section = mapping[found.provider]
        found.server.state.templates = {str(section.get("template_code") or section["template_id"]): section["text"]}
        yield found


@pytest.fixture
def environment(db_url: str, account: Account, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "winback-sms.yaml").write_text(RULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update({"OUTREACH_DATABASE_URL": db_url, "OUTREACH_RULES_DIR": str(tmp_path / "rules"),
                "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"), "OUTREACH_CONFIG": str(tmp_path / "none.toml"),
                "OUTREACH_SECRET_KEY": "test-secret", "OUTREACH_RETRY_BASE": "1",
                **{f"OUTREACH_{k.upper()}": str(v) for k, v in account.options().items()}})
    if db_url.startswith("postgresql"):
        env.update({"OUTREACH_BROKER_URL": request.getfixturevalue("redis_url"),
                    "OUTREACH_BROKER_NAMESPACE": request.getfixturevalue("redis_namespace")})
    return env


def outreach_run(env: dict[str, str], now: str) -> None:
    result = subprocess.run([str(OUTREACH), "run", "--now", now], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def settled(engine: Engine, *, pending: set[MessageStatus]) -> dict[str, Message]:
    """Each customer's message once none is queued or sending (nor in ``pending``)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        with Session(engine, expire_on_commit=False) as s:
            rows = {ext: m for ext, m in s.execute(select(Customer.external_id, Message)
                                                   .join(Message, Message.customer_id == Customer.id))}
        busy = {MessageStatus.QUEUED, MessageStatus.SENDING} | pending
        if (rows and not any(m.status in busy for m in rows.values())) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_outreach_run_sends_the_approved_template_through_the_provider(
    engine: Engine, db_url: str, account: Account, environment: dict[str, str], tmp_path: Path
) -> None:
    # Given lapsed Chinese customers with SMS consent — Li's number refused by the provider — and an
    # English one, whose sms.txt has no approved template; and the provider throttling the first request
    shop(engine, customers=[
        {"ext": "wang", "name": "王小明", "locale": "zh_CN", "phone": WANG, "consent": {"sms": "granted"}},
        {"ext": "li", "name": "李华", "locale": "zh_CN", "phone": LI, "consent": {"sms": "granted"}},
        {"ext": "ada", "name": "Ada Lovelace", "locale": "en", "phone": "+447700900123",
         "consent": {"sms": "granted"}},
    ])
    account.server.state.invalid.add(account.on_the_wire(LI))
    account.server.state.fail_next(1, account.throttled)
    worker = start_worker(environment, tmp_path) if db_url.startswith("postgresql") else None
    try:
        # When `outreach run` plans and sends: the throttled provider makes the chunk wait for a retry —
        # but Ada's message, which has no approved template to go as, fails at once (it is rendered first)
        outreach_run(environment, FIRST_RUN)
        first = settled(engine, pending=set())
        assert {ext: m.status for ext, m in first.items()} == {
            "wang": MessageStatus.PLANNED, "li": MessageStatus.PLANNED, "ada": MessageStatus.FAILED}, first
        assert all(account.throttled in (first[ext].last_error or "") for ext in ("wang", "li"))
        # And a later run hands the due retries over again
        time.sleep(2.5)
        outreach_run(environment, SECOND_RUN)
        final = settled(engine, pending={MessageStatus.PLANNED})
    finally:
        if worker is not None:
            stop_worker(worker)
    # Then Wang got the approved template once, reading exactly as sms.zh_CN.txt, its cost per UCS-2 segment
    [taken] = account.server.state.accepted
    assert (taken.phone, taken.text) == (account.on_the_wire(WANG), WANG_READS)
    wang = final["wang"]
    assert (wang.status, wang.provider_id, wang.attempts) == (MessageStatus.SENT, taken.provider_id, 2)
    assert wang.cost == Decimal("0.05") * sms_segments(WANG_READS)
    # And Li's message failed for good, saying why, as did Ada's, which has no approved template to go as
    assert final["li"].status is final["ada"].status is MessageStatus.FAILED
    assert "phone number is not valid" in (final["li"].last_error or "")
    assert "no approved" in (final["ada"].last_error or "") and "sms.providers.yaml" in (final["ada"].last_error or "")

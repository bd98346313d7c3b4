"""Production path: Redis broker and separate `outreach worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.planning.launch import launch
from outreach.sending import queue
from outreach.store.models import Message
from outreach.webhooks.server import free_port
from test_sending import NOW, REPO, make_settings, rule, shop
from test_webhooks import scrape

OUTREACH = Path(sys.executable).parent / "outreach"
#: How long the worker may take to deliver a handful of messages.
DELIVERY_DEADLINE_S = 60


@pytest.fixture
def worker_env(db_url: str, redis_url: str, redis_namespace: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "OUTREACH_DATABASE_URL": db_url,
        "OUTREACH_BROKER_URL": redis_url,
        "OUTREACH_BROKER_NAMESPACE": redis_namespace,
        "OUTREACH_OUTBOX_DIR": str(tmp_path / "outbox"),
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
        "OUTREACH_CONFIG": str(tmp_path / "none.toml"),
        "OUTREACH_SECRET_KEY": "test-secret",
    }
    yield env
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{redis_namespace}*"))
    if keys:
        client.delete(*keys)


def start_worker(env: dict[str, str], tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen(
        [str(OUTREACH), "worker", "--processes", "2", "--threads", "2", *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_until_done(engine: Engine, expected: int) -> int:
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while time.monotonic() < deadline:
        with Session(engine) as s:
            done = s.scalar(select(func.count()).where(Message.status == MessageStatus.SENT))
        if done >= expected:
            return done
        time.sleep(0.2)
    return done


def test_redis_workers_deliver_each_message_once(
    engine: Engine, db_url: str, redis_url: str, redis_namespace: str,
    worker_env: dict[str, str], tmp_path: Path,
) -> None:
    # Given five lapsed customers with consent and a Redis-backed installation
    settings = make_settings(tmp_path, db_url, broker_url=redis_url, broker_namespace=redis_namespace)
    shop(engine, customers=[
        {"ext": f"c{i}", "email": f"c{i}@example.com", "consent": {"email": "granted"}} for i in range(5)
    ])
    # When the campaign is launched (messages go to Redis) and every message is
    # additionally enqueued a second time, as an at-least-once broker may do
    results = launch(settings, engine, [rule()], now=NOW, simulated=True)
    assert results[0].queued == 5
    ctx = queue.setup(settings, engine)
    with Session(engine) as s:
        queue.enqueue(ctx, list(s.scalars(select(Message.id))), as_of=NOW)
    # And two separate worker processes consume the queue, serving their metrics
    port = free_port()
    proc = start_worker(worker_env, tmp_path, "--metrics-port", str(port))
    try:
        sent = wait_until_done(engine, 5)
        time.sleep(1.0)  # let the duplicates be consumed too
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            figures = scrape(http)
    finally:
        stop_worker(proc)
    # Then every customer got exactly one email
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert sent == 5, log
    assert len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 5
    with Session(engine) as s:
        assert set(s.scalars(select(Message.attempts))) == {1}
        assert set(s.scalars(select(Message.sent_at))) == {NOW}
    # And the metrics of both processes together say so: 5 sent, one latency each, nothing waiting
    assert figures[("outreach_messages_total", (("outcome", "sent"),))] == 5
    assert figures[("outreach_delivery_seconds_count", (("channel", "email"),))] == 5
    assert figures[("outreach_outbox_messages", (("status", "queued"),))] == 0
    assert figures[("outreach_broker_pending", ())] == 0


def test_worker_without_a_secret_fails_at_boot_with_the_setting_to_add(
    pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    # PostgreSQL = production: no development secret to fall back on.
    env = {**os.environ, "OUTREACH_DATABASE_URL": pg_database, "OUTREACH_BROKER_URL": redis_url,
           "OUTREACH_CONFIG": str(tmp_path / "x.toml")}
    env.pop("OUTREACH_SECRET_KEY", None)
    result = subprocess.run([str(OUTREACH), "worker", "--processes", "1", "--threads", "1"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "OUTREACH_SECRET_KEY" in result.stdout + result.stderr


def test_worker_refuses_embedded_broker(tmp_path: Path) -> None:
    env = {**os.environ, "OUTREACH_BROKER_URL": "memory://", "OUTREACH_CONFIG": str(tmp_path / "x.toml")}
    result = subprocess.run([str(OUTREACH), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3  # a configuration error
    assert "OUTREACH_BROKER_URL=redis://" in result.stderr
    assert "Traceback" not in result.stderr

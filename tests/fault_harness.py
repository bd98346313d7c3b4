"""Real parts for the fault tests: an installation of Outreach run through
its command line, a Redis server of the test's own (so it can be stopped
and started again), and a slow SMTP relay that counts every Message-ID.

Every wait has a deadline; a test that times out prints the worker's log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from factories import bulk_customers
from outreach.domain import MessageStatus
from outreach.store.engine import transaction
from outreach.store.models import Message, Order
from smtp_server import LOOPBACK, SmtpServer, SmtpSink, smtp_server

REPO = Path(__file__).resolve().parents[1]
OUTREACH = Path(sys.executable).parent / "outreach"
#: The simulated moment of every launch: customers last ordered 40 days before.
NOW = datetime(2026, 6, 1, 9, 0)
RULE_NAME = "fault-test"
RULE = f"""
name: {RULE_NAME}
trigger: {{type: inactivity, days: 30}}
template: winback
channels: [email]
cost: {{email: 0.01}}
"""
#: Settings that make a crash, an outage or an empty broker noticed in
#: seconds rather than the production defaults' minutes.
FAST = {
    "OUTREACH_WORKER_HEARTBEAT": "0.5",
    "OUTREACH_WORKER_DEAD_AFTER": "3",
    "OUTREACH_MAINTENANCE_INTERVAL": "1",
    "OUTREACH_BROKER_LOST_AFTER": "2",
    "OUTREACH_RETRY_BASE": "1",
    "OUTREACH_RETRY_MAX": "2",
    "OUTREACH_BATCH_SIZE": "20",
}
#: No wait of a fault test lasts longer than this.
DEADLINE_S = 90.0
_MESSAGE_ID = re.compile(rb"^Message-ID: <outreach-msg-(\d+)@", re.M | re.I)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """``redis-server`` on a port of its own, without persistence: stopping
    it loses every queued broker message, as a crash of an unpersisted Redis does."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            from conftest import service_unavailable

            service_unavailable("redis-server", "the redis-server program is not installed")
        self.binary = str(binary)
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers(self.port), what=f"redis-server on port {self.port} to answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Relay:
    """A slow SMTP relay that can go down and come back on the same port,
    remembering what it accepted."""

    def __init__(self, *, delay: float) -> None:
        self.sink = SmtpSink(delay=delay)
        self.port = 0
        self._stack: ExitStack | None = None

    def start(self) -> None:
        self._stack = ExitStack()
        server: SmtpServer = self._stack.enter_context(smtp_server(port=self.port, sink=self.sink))
        self.port = server.port

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def copies(self) -> Counter[int]:
        """How many copies of each outbox message the relay accepted."""
        found: Counter[int] = Counter()
        for received in list(self.sink.received):
            match = _MESSAGE_ID.search(received.data)
            assert match, received.data[:300]
            found[int(match.group(1))] += 1
        return found


def wait_for(condition: Callable[[], Any], *, what: str, timeout: float = DEADLINE_S,
             log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"waited {timeout:g} s for {what}\n{tail}")


@dataclass
class Installation:
    """Outreach as its operator runs it: commands and `outreach worker`."""

    folder: Path
    engine: Engine
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    def outreach(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(OUTREACH), *args], env=self.env, cwd=self.folder, capture_output=True,
                              text=True, timeout=DEADLINE_S)
        if check:
            assert done.returncode == 0, f"outreach {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def start_in_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(OUTREACH), *args], env=self.env, cwd=self.folder, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def launch(self) -> None:
        self.outreach("campaign", "launch", f"rules/{RULE_NAME}.yaml", "--now", f"{NOW:%Y-%m-%dT%H:%M:%S}Z")

    def start_worker(self, processes: int = 2, threads: int = 2) -> subprocess.Popen[bytes]:
        out = self.log.open("ab")
        proc = subprocess.Popen([str(OUTREACH), "worker", "--processes", str(processes), "--threads", str(threads)],
                                env=self.env, cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.workers.clear()

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as s:
            rows = s.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        return {(status.value if hasattr(status, "value") else str(status)): n for status, n in rows}

    def sent(self) -> int:
        return self.counts().get(MessageStatus.SENT.value, 0)

    def message_ids(self, status: MessageStatus | None = None) -> set[int]:
        query = select(Message.id) if status is None else select(Message.id).where(Message.status == status)
        with Session(self.engine) as s:
            return set(s.scalars(query))

    def redelivered(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).where(Message.redelivered.is_(True))) or 0)

    def wait_for(self, condition: Callable[[], Any], *, what: str, timeout: float = DEADLINE_S) -> Any:
        return wait_for(condition, what=what, timeout=timeout, log=self.log)

    def wait_until_settled(self, *, quiet: float = 1.5) -> dict[str, int]:
        """Counts once nothing has changed for ``quiet`` seconds."""
        last, since = self.counts(), time.monotonic()
        deadline = since + DEADLINE_S
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.counts()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        raise AssertionError(f"the campaign never settled: {last}")


def populate(engine: Engine, count: int) -> list[int]:
    """``count`` customers with email consent whose only order was 40 days
    before ``NOW``: the fault rule plans one email for each."""
    with transaction(engine) as session:
        ids = bulk_customers(session, count, prefix="f")
        session.execute(insert(Order), [
            {"external_id": f"fo-{cid}", "customer_id": cid, "ordered_at": NOW - timedelta(days=40),
             "amount": Decimal("50"), "currency": "CNY", "source": "import"} for cid in ids])
    return ids


@contextmanager
def installation(folder: Path, engine: Engine, db_url: str, *, broker_url: str, relay: Relay, rule: str = RULE,
                 **settings: str) -> Iterator[Installation]:
    """A project folder with the fault rule (or ``rule``, named RULE_NAME too), sending through ``relay``."""
    (folder / "rules").mkdir()
    (folder / "rules" / f"{RULE_NAME}.yaml").write_text(rule)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OUTREACH_")}
    env.update({
        "OUTREACH_DATABASE_URL": db_url,
        "OUTREACH_BROKER_URL": broker_url,
        "OUTREACH_BROKER_NAMESPACE": f"outreach-fault-{uuid.uuid4().hex[:8]}",
        "OUTREACH_RULES_DIR": str(folder / "rules"),
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
        "OUTREACH_OUTBOX_DIR": str(folder / "outbox"),
        "OUTREACH_CONFIG": str(folder / "none.toml"),
        "OUTREACH_SECRET_KEY": "fault-test-secret",
        "OUTREACH_EMAIL_TRANSPORT": "smtp",
        "OUTREACH_SMTP_HOST": LOOPBACK,
        "OUTREACH_SMTP_PORT": str(relay.port),
        "OUTREACH_FROM_ADDRESS": "Jade Leaf Tea <hello@jadeleaf.example>",
        **FAST,
        **settings,
    })
    setup = Installation(folder=folder, engine=engine, env=env)
    try:
        yield setup
    finally:
        setup.stop_workers()

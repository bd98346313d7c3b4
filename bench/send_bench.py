"""Sending speed, end to end, against the wire limit measured in the same run.

    python bench/send_bench.py --customers 100000            # PostgreSQL + Redis, and embedded
    python bench/send_bench.py --customers 10000 --mode production
    python bench/send_bench.py --customers 1000000 --mode embedded

What it measures (N consented customers, one rule that plans N emails):

* **wire**: Postfix's ``smtp-source`` (10 sessions, messages of the size ours
  have) into Postfix's ``smtp-sink`` on loopback — what this machine's
  loopback SMTP path takes at most.
* **production**: PostgreSQL + Redis + ``outreach worker`` (one process per
  core) delivering over SMTP into the same sink; from the start of the launch
  to the last message counted, and planning + enqueueing alone.
* **embedded**: SQLite, the in-process broker and the file outbox, against
  the disk's limit (writing as many files of the same size, atomically).

The sink appends every message to files on tmpfs, which are read and
counted by Message-ID as they fill: every message must arrive exactly once.
Also printed: the workers' CPU per message (CPU time, not wall: the host
takes "steal" time from this VM, also printed) and their peak memory.
Needs Postfix's tools (Debian: ``apt-get install postfix``), PostgreSQL and
Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

from outreach.config import load_settings
from outreach.domain import MessageStatus
from outreach.planning.launch import launch
from outreach.rules import LoadedRule, parse_rule
from outreach.store.engine import make_engine, migrate
from outreach.store.models import Message
from send_shop import RULE, generate  # bench/send_shop.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 20, 2, 0)
PG_ADMIN = os.environ.get("OUTREACH_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("OUTREACH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SMTP_SOURCE, SMTP_SINK = "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"
#: Messages the wire measurement sends (enough for a steady rate).
WIRE_MESSAGES = int(os.environ.get("OUTREACH_BENCH_WIRE", 30_000))
#: How long a run may take at most, and without a new message, before it is called stuck.
DEADLINE_S = 3 * 3600
STALLED_S = 120
#: Seconds after which the sink no longer writes to a dump file.
SETTLED_S = 3
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.M | re.I)
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """Postfix's smtp-sink appending to a file per second on tmpfs; a thread
    counts finished files by Message-ID and deletes them (bounded space)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="outreach-sink-", dir="/dev/shm"))
        self.ids: Counter[bytes] = Counter()
        self.lock = threading.Lock()
        self.reading = threading.Lock()
        self.stopping = threading.Event()

    def __enter__(self) -> Sink:
        self.process = subprocess.Popen(
            [SMTP_SINK, "-u", "root", "-D", str(self.folder / "%Y%m%d%H%M%S.mbox"), f"127.0.0.1:{self.port}",
             "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.counter = threading.Thread(target=self._count_loop, daemon=True)
        self.counter.start()
        return self

    def _count_files(self, *, all_files: bool) -> None:
        # A file is read (and deleted) once its second is long gone: the sink
        # opens a file when a message starts and may write to it a moment later.
        recent = (datetime.now() - timedelta(seconds=SETTLED_S)).strftime("%Y%m%d%H%M%S")
        with self.reading:  # one reader at a time
            for path in sorted(self.folder.glob("*.mbox")):
                if not all_files and path.stem >= recent:
                    continue
                found = _MESSAGE_ID.findall(path.read_bytes())
                path.unlink()
                with self.lock:
                    self.ids.update(found)

    def _count_loop(self) -> None:
        while not self.stopping.wait(0.5):
            self._count_files(all_files=False)

    def wait_for(self, expected: int, *, deadline_s: float = DEADLINE_S) -> float:
        """Seconds until ``expected`` messages were counted (time.monotonic)."""
        deadline = time.monotonic() + deadline_s
        shown = last_change = time.monotonic()
        previous = -1
        while time.monotonic() < deadline:
            with self.lock:
                counted = sum(self.ids.values())
            if counted != previous:
                previous, last_change = counted, time.monotonic()
            if counted >= expected:
                return time.monotonic()
            if counted and time.monotonic() - last_change > STALLED_S:
                raise TimeoutError(f"the sink counted {counted:,} of {expected:,} messages and nothing more "
                                   f"for {STALLED_S} s")
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                print(f"  … {counted:,} of {expected:,} arrived", file=sys.stderr, flush=True)
            time.sleep(0.2)
        raise TimeoutError(f"the sink counted {sum(self.ids.values())} of {expected} messages")

    def settle(self) -> tuple[int, int]:
        """(messages, distinct Message-IDs) once everything written is counted."""
        time.sleep(SETTLED_S)
        self._count_files(all_files=True)
        with self.lock:
            return sum(self.ids.values()), len(self.ids)

    def reset(self) -> None:
        self.settle()
        with self.lock:
            self.ids.clear()

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def wire(sink: Sink, size: int) -> float:
    """Messages per second smtp-source pushes into the sink."""
    sink.reset()
    started = time.monotonic()
    subprocess.run([SMTP_SOURCE, "-s", "10", "-m", str(WIRE_MESSAGES), "-l", str(size), "-f", "shop@bench.example",
                    "-t", "c@bench.example", f"127.0.0.1:{sink.port}"], check=True)
    rate = WIRE_MESSAGES / (time.monotonic() - started)  # smtp-source ends when the sink took the last one
    total, unique = sink.settle()
    assert total == unique == WIRE_MESSAGES, (total, unique)
    sink.reset()
    return rate


def wait_sent(engine, expected: int) -> float:  # type: ignore[no-untyped-def]
    """time.monotonic() when the outbox records ``expected`` messages sent
    (each was taken by the SMTP server before it was recorded)."""
    deadline = time.monotonic() + DEADLINE_S
    shown = time.monotonic()
    while time.monotonic() < deadline:
        with Session(engine) as session:
            sent = session.scalar(select(func.count()).where(Message.status == MessageStatus.SENT)) or 0
        if sent >= expected:
            return time.monotonic()
        if time.monotonic() - shown > 10:
            shown = time.monotonic()
            print(f"  … {sent:,} of {expected:,} sent", file=sys.stderr, flush=True)
        time.sleep(0.2)
    raise TimeoutError(f"{expected:,} messages were not sent within {DEADLINE_S} s")


def disk(folder: Path, size: int, count: int = 20_000) -> float:
    """Files per second written the way the outbox writes them (temp file, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    started = time.monotonic()
    for i in range(count):
        temp = folder / f".{i}.tmp"
        with temp.open("wb") as handle:
            handle.write(data)
        os.replace(temp, folder / f"{i}.eml")
    rate = count / (time.monotonic() - started)
    shutil.rmtree(folder)
    return rate


def message_size(settings_dir: Path) -> int:
    """The size of one email as Outreach builds it (the wire test sends that size)."""
    from outreach.channels.base import Envelope
    from outreach.channels.mime import build
    from outreach.domain import Channel, CustomerType
    from outreach.sending.render import renderer_for
    from outreach.store.claims import Person

    settings = load_settings(templates_dir=ROOT / "templates", secret_key="bench", outbox_dir=settings_dir)
    person = Person(external_id="B1", name="Ada Lovelace", email="c1@bench.example", phone=None, locale="en",
                    customer_type=CustomerType.RETAIL, attributes={}, tags=[], birthday=None)
    rendered = renderer_for(settings).render(template="winback", channel=Channel.EMAIL, customer=person,
                                             message_id=1, rule={"name": "send-bench", "description": ""})
    envelope = Envelope(message_id=1, channel="email", to="c1@bench.example", text=rendered.text,
                        subject=rendered.subject, html=rendered.html, headers=rendered.headers,
                        idempotency_key="outreach-msg-1")
    return len(build(envelope, from_address=settings.from_address).data)


def steal_share() -> tuple[int, int]:
    """(steal, total) jiffies of the machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICKS


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def loaded_rule() -> LoadedRule:
    return LoadedRule(parse_rule(RULE, file="send-bench.yaml"), Path("send-bench.yaml"), RULE)


def counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return {str(s): n for s, n in session.execute(select(Message.status, func.count()).group_by(Message.status))}


def production(customers: int, sink: Sink, processes: int, threads: int, console: Console) -> dict[str, object]:
    name = f"outreach_sendbench_{customers}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    migrate(engine)
    console.print(f"production: generating {customers:,} customers …")
    generate(engine, customers=customers, now=NOW)
    folder = Path(tempfile.mkdtemp(prefix="outreach-send-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    namespace = f"sendbench-{os.getpid()}"
    env.update({
        "OUTREACH_DATABASE_URL": url, "OUTREACH_BROKER_URL": REDIS, "OUTREACH_BROKER_NAMESPACE": namespace,
        "OUTREACH_EMAIL_TRANSPORT": "smtp", "OUTREACH_SMTP_HOST": "127.0.0.1",
        "OUTREACH_SMTP_PORT": str(sink.port), "OUTREACH_SECRET_KEY": "bench-secret",
        "OUTREACH_TEMPLATES_DIR": str(ROOT / "templates"), "OUTREACH_OUTBOX_DIR": str(folder),
        "OUTREACH_CONFIG": str(folder / "none.toml"), "OUTREACH_LOG_LEVEL": "warning",
        "OUTREACH_WORKER_THREADS": str(threads),
    })
    worker = subprocess.Popen([str(Path(sys.executable).parent / "outreach"), "worker", "--processes",
                               str(processes)], env=env, start_new_session=True)
    try:
        return _measure(worker, engine, url, namespace, folder, customers, sink, admin, name)
    finally:  # whatever happened, no worker outlives its run
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def _measure(worker: subprocess.Popen[bytes], engine: Engine, url: str, namespace: str, folder: Path,
             customers: int, sink: Sink, admin: Engine, name: str) -> dict[str, object]:
    time.sleep(3)  # the processes start, register and wait on the queues
    pids = children(worker.pid)
    cpu_before = {pid: cpu_seconds(pid) for pid in pids}
    settings = load_settings(database_url=url, broker_url=REDIS, broker_namespace=namespace,
                             email_transport="smtp", smtp_host="127.0.0.1", smtp_port=sink.port,
                             secret_key="bench-secret", templates_dir=ROOT / "templates", outbox_dir=folder)
    steal0 = steal_share()
    started = time.monotonic()
    launch(settings, engine, [loaded_rule()], now=NOW, simulated=False)
    enqueued = time.monotonic() - started
    done = wait_sent(engine, customers)
    elapsed = done - started
    steal1 = steal_share()
    time.sleep(1)
    cpu = sum(cpu_seconds(pid) - cpu_before.get(pid, 0) for pid in pids if Path(f"/proc/{pid}").exists())
    memory = max((peak_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()), default=0.0)
    sink.wait_for(customers)
    total, unique = sink.settle()
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=120)
    status = counts(engine)
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    sink.reset()
    return {"enqueue_s": enqueued, "elapsed_s": elapsed, "rate": customers / elapsed,
            "cpu_ms": cpu / customers * 1000, "peak_mb": memory, "sink": (total, unique),
            "sent": status.get(MessageStatus.SENT.value, 0),
            "steal": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])}


def embedded(customers: int, console: Console) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="outreach-embedded-", dir=str(ROOT / "bench")))
    try:
        url = f"sqlite:///{folder / 'outreach.db'}"
        engine = make_engine(url)
        migrate(engine)
        console.print(f"embedded: generating {customers:,} customers …")
        generate(engine, customers=customers, now=NOW)
        settings = load_settings(database_url=url, broker_url="memory://", outbox_dir=folder / "outbox",
                                 templates_dir=ROOT / "templates", secret_key="bench-secret")
        reference = disk(folder / "disk-check", message_size(folder))
        cpu0, steal0 = time.process_time(), steal_share()
        started = time.monotonic()
        launch(settings, engine, [loaded_rule()], now=NOW, simulated=False)
        elapsed = time.monotonic() - started
        cpu, steal1 = time.process_time() - cpu0, steal_share()
        ids: Counter[bytes] = Counter()
        for path in (folder / "outbox" / "email").glob("*.eml"):
            with path.open("rb") as handle:
                ids.update(_MESSAGE_ID.findall(handle.read(4096)))
        status = counts(engine)
        engine.dispose()
        return {"elapsed_s": elapsed, "rate": customers / elapsed, "cpu_ms": cpu / customers * 1000,
                "reference": reference, "files": (sum(ids.values()), len(ids)),
                "sent": status.get(MessageStatus.SENT.value, 0), "peak_mb": peak_mb(os.getpid()),
                "steal": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--mode", choices=["production", "embedded", "both"], default="both")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2,
                        help="worker processes (default: one per core, as outreach worker starts)")
    parser.add_argument("--threads", type=int, default=load_settings().worker_threads,
                        help="threads per worker process (default: the worker_threads setting's default)")
    args = parser.parse_args()
    console = Console(width=200)
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            sys.exit(f"{tool} is missing: install Postfix's tools (Debian: apt-get install postfix)")
    table = Table(title=f"Sending one email to each of N customers ({datetime.now():%Y-%m-%d %H:%M}, "
                        f"{os.cpu_count()} cores)")
    for column in ("mode", "N", "plan + enqueue s", "send s", "messages/s", "reference/s", "ratio",
                   "worker CPU ms/msg", "peak MB", "steal", "exactly once"):
        table.add_column(column, justify="left" if column in ("mode", "exactly once") else "right")
    size = message_size(ROOT / "bench")
    with Sink() as sink:
        for n in args.customers:
            if args.mode in ("production", "both"):
                limit = wire(sink, size)
                r = production(n, sink, args.processes, args.threads, console)
                total, unique = r["sink"]  # type: ignore[misc]
                ok = total == unique == n and r["sent"] == n
                table.add_row("PostgreSQL + Redis → SMTP", f"{n:,}", f"{r['enqueue_s']:.2f}", f"{r['elapsed_s']:.1f}",
                              f"{r['rate']:,.0f}", f"{limit:,.0f} (wire)", f"{r['rate'] / limit:.2f}",  # type: ignore[operator]
                              f"{r['cpu_ms']:.2f}", f"{r['peak_mb']:.0f}", f"{r['steal']:.0%}",
                              "yes" if ok else f"NO: {total} delivered, {unique} distinct, {r['sent']} sent")
                console.print(table)
            if args.mode in ("embedded", "both"):
                e = embedded(n, console)
                total, unique = e["files"]  # type: ignore[misc]
                ok = total == unique == n and e["sent"] == n
                table.add_row("SQLite + in-process → outbox", f"{n:,}", "—", f"{e['elapsed_s']:.1f}",
                              f"{e['rate']:,.0f}", f"{e['reference']:,.0f} (disk)",
                              f"{e['rate'] / e['reference']:.2f}",  # type: ignore[operator]
                              f"{e['cpu_ms']:.2f}", f"{e['peak_mb']:.0f}", f"{e['steal']:.0%}",
                              "yes" if ok else f"NO: {total} files, {unique} distinct, {e['sent']} sent")
                console.print(table)
    console.print(f"[dim]message size {size:,} bytes; wire = smtp-source, 10 sessions, into smtp-sink; "
                  "worker CPU is CPU time (not wall) per message, the steal column is the share of the "
                  "machine's time the host took during the send[/]")


if __name__ == "__main__":
    main()

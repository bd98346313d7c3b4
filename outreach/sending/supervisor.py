"""``outreach worker``: keep N worker processes running.

Each process is ``python -m outreach.sending.worker``. One that dies (a
crash, ``kill -9``, the OOM killer) is started again — after a pause that
grows while it keeps dying at once — and the others go on: one dead
process never stops the rest. SIGTERM or SIGINT stops them all gracefully
(each finishes the batches in hand) and then the supervisor itself. With
``metrics_port`` set it serves all processes' Prometheus metrics together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType

from outreach import logs

log = logs.get_logger("outreach.supervisor")

#: Seconds between looks at the children.
POLL_S = 0.5
#: A child that lived shorter than this died "at once": wait longer each time.
QUICK_DEATH_S = 10.0
RESTART_DELAY_S = (0.5, 1, 2, 5, 10, 30)
#: How long stopping children may take before they are killed.
STOP_GRACE_S = 150.0


@dataclass
class Child:
    slot: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    restarts: int = field(default=0)


def _spawn(threads: int | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "outreach.sending.worker"]
    if threads:
        command += ["--threads", str(threads)]
    return subprocess.Popen(command, env=env)


def supervise(*, processes: int, threads: int | None, metrics_port: int | None = None) -> int:
    """Run until told to stop; returns the exit code."""
    env = dict(os.environ)
    if metrics_port:
        from outreach.sending.exposition import serve_multiprocess_metrics

        folder = tempfile.mkdtemp(prefix="outreach-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
        serve_multiprocess_metrics(metrics_port, folder)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [Child(slot) for slot in range(processes)]
    log.info("starting worker processes", processes=processes, threads=threads)
    while not stopping:
        now = time.monotonic()
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                lived = now - child.started
                child.quick_deaths = child.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
                delay = RESTART_DELAY_S[min(child.quick_deaths, len(RESTART_DELAY_S) - 1)]
                log.error("worker process died; starting another", pid=child.process.pid, exit_code=code,
                          lived_seconds=round(lived, 1), restart_in_seconds=delay)
                if metrics_port:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(child.process.pid)
                child.process, child.restart_at = None, now + delay
            if child.process is None and now >= child.restart_at:
                child.process, child.started = _spawn(threads, env), now
                child.restarts += 1
        time.sleep(POLL_S)
    log.info("stopping worker processes")
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker process did not stop in time; killing it", pid=process.pid)
            process.kill()
    return 0

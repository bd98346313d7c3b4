"""One worker process: ``python -m outreach.sending.worker [--threads N]``
(what ``outreach worker`` starts, once per ``--processes``, and restarts
when one dies).

At start it resolves the OUTREACH_* settings, sets up logging, checks that
the channels exist, a secret is set and the broker answers — failing at
once, loudly, rather than on every message — then registers itself, works
both queues (transactional first) with a Dramatiq worker, beats and keeps
the queue whole (``janitor``). On SIGTERM or SIGINT it finishes the batches
in hand and leaves: nothing is given up half-sent.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from dramatiq import Worker

from outreach import logs
from outreach.channels import check_settings
from outreach.config import get_settings
from outreach.sending import queue
from outreach.sending.janitor import Janitor

log = logs.get_logger("outreach.worker")

#: How long a stopping worker waits for the batches in hand (milliseconds).
STOP_TIMEOUT_MS = 120_000
#: How long a worker thread waits for a message before looking for a stop (ms).
WORKER_TIMEOUT_MS = 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m outreach.sending.worker")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: worker_threads)")
    args = parser.parse_args(argv)
    settings = get_settings()
    logs.configure(level=settings.log_level or "info", fmt=settings.log_format)
    check_settings(settings)
    settings.require_secret()
    ctx = queue.setup(settings)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    janitor = Janitor(ctx)
    janitor.start()
    threads = args.threads or settings.worker_threads
    worker = Worker(ctx.broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
    worker.start()
    log.info("worker started", worker_id=ctx.worker_id, threads=threads, queues=list(queue.QUEUES))
    stopping.wait()
    log.info("worker stopping: finishing the batches in hand", worker_id=ctx.worker_id)
    worker.stop(timeout=STOP_TIMEOUT_MS)
    janitor.stop()
    log.info("worker stopped", worker_id=ctx.worker_id)


if __name__ == "__main__":
    main()

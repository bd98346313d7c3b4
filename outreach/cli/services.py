"""``outreach worker`` and ``outreach serve``: the long-running services."""

from __future__ import annotations

import os
import sys

import click

from outreach.cli.common import app_settings, friendly, open_engine
from outreach.sending.supervisor import supervise


@click.command("worker")
@click.option("--processes", default=os.cpu_count() or 2, show_default="the machine's cores",
              help="Worker processes (one per core: each runs Python on one core at a time).")
@click.option("--threads", type=int, default=None, help="Threads per process (default: worker_threads, 2).")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics (overrides metrics_port).")
@click.pass_context
@friendly
def worker(ctx: click.Context, processes: int, threads: int | None, metrics_port: int | None) -> None:
    """Run worker processes that deliver queued messages (needs a Redis broker).

    A process that dies is started again; the others go on. SIGTERM (or
    Ctrl-C) stops them after the batches in hand.

    \b
    Example:
      OUTREACH_BROKER_URL=redis://127.0.0.1:6379/0 outreach worker --processes 2 --metrics-port 9191
    """
    from outreach import brokers
    from outreach.channels import check_settings
    from outreach.errors import ConfigError

    settings = app_settings(ctx, service=True)
    if brokers.in_process(settings.broker_url):
        raise ConfigError(
            "the embedded broker (memory://) delivers inside `campaign launch`; "
            "set OUTREACH_BROKER_URL=redis://… to run separate workers"
        )
    check_settings(settings)
    settings.require_secret()  # the worker processes would fail on every message
    brokers.make_broker(settings)  # Redis answers (ServiceError, exit 3, otherwise)
    open_engine(settings).dispose()  # and so does the database, at the newest schema
    _pass_options(ctx)
    sys.exit(supervise(processes=processes, threads=threads, metrics_port=metrics_port or settings.metrics_port))


def _pass_options(ctx: click.Context) -> None:
    """The command line's settings, into the environment the processes it starts read."""
    obj = ctx.find_root().obj
    passed = {**obj["overrides"], "log_level": obj.get("log_level"), "log_format": obj.get("log_format")}
    for key, value in passed.items():
        if value:
            os.environ[f"OUTREACH_{key.upper()}"] = value


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=1, show_default=True,
              help="Server processes sharing the port (one per core the server may use).")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request (one record each: slow under load).")
@click.pass_context
@friendly
def serve(ctx: click.Context, host: str, port: int, workers: int, access_log: bool) -> None:
    """Run the webhook server: unsubscribe, open pixel, click redirect, orders, SMS.

    \b
    Example:
      OUTREACH_PUBLIC_URL=https://t.example.com outreach serve --host 0.0.0.0 --port 8000
    """
    from outreach.webhooks.app import serve as run_server

    settings = app_settings(ctx, service=True)
    engine = open_engine(settings)
    if workers > 1:  # each process reads its settings from the environment
        _pass_options(ctx)
    run_server(settings, engine, host=host, port=port, workers=workers, access_log=access_log)


COMMANDS = (worker, serve)

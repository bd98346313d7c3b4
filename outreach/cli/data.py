"""``outreach import`` and ``outreach db upgrade``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from outreach.cli.common import (
    FORMAT_OPTION,
    NOW_OPTION,
    STDIN,
    app_settings,
    console,
    emit_json,
    friendly,
    now_option,
    open_engine,
)
from outreach.importing import KINDS


@click.command("import")
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import good rows; write bad ones to a reject file.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Reject file path (implies --skip-invalid).")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def import_(ctx: click.Context, kind: str, file: Path, skip_invalid: bool, rejects: Path | None, now: str | None,
            fmt: str) -> None:
    """Import (upsert) customers, orders, consents or events from a CSV file
    (FILE is - to read standard input).

    Nothing is committed if any row is bad, unless --skip-invalid is given.

    \b
    Example:
      outreach import customers customers.csv
      outreach import orders orders.csv --skip-invalid --rejects bad-orders.csv
      export-from-shop --orders | outreach import orders -
    """
    from outreach.importing import import_csv

    settings = app_settings(ctx)
    moment, _ = now_option(now)
    from_stdin = str(file) == STDIN
    result = import_csv(
        open_engine(settings), kind, Path("<stdin>") if from_stdin else file,  # type: ignore[arg-type]
        stream=sys.stdin.buffer if from_stdin else None,
        skip_invalid=skip_invalid or rejects is not None, reject_path=rejects,
        now=moment, progress=sys.stderr.isatty(),
    )
    if fmt == "json":
        emit_json(result)
        return
    console.print(
        f"{kind}: {result.rows} rows, {result.inserted} inserted, {result.updated} updated, "
        f"{result.rejected} rejected" + (f" (see {result.reject_path})" if result.rejected else "")
        + (f"; {result.suppressed} address(es) of erased customers suppressed" if result.suppressed else "")
    )


@click.group()
def db() -> None:
    """Database schema management.

    \b
    Example:
      OUTREACH_DATABASE_URL=postgresql+psycopg://app@db/outreach outreach db upgrade
    """


@db.command("upgrade")
@click.pass_context
@friendly
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the schema to the newest version.

    \b
    Example:
      outreach db upgrade
    """
    from outreach.store.engine import make_engine, migrate

    settings = app_settings(ctx)
    migrate(make_engine(settings.database_url))
    console.print("schema is up to date")


COMMANDS = (import_, db)

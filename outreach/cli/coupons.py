"""``outreach coupons generate | import | list | export``: pools of personal coupon codes."""

from __future__ import annotations

import csv
import sys
from datetime import date
from pathlib import Path

import click
from rich.markup import escape

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
from outreach.errors import InputError


def _pool(name: str) -> str:
    from outreach.rules.offers import POOL_NAME

    if not POOL_NAME.match(name):
        raise InputError.single(f"'{name}' is not a pool name", field="POOL",
                                hint="use lower-case letters, digits, '-' and '_' (e.g. spring15), as in the "
                                     "rule's 'offer: {pool: …}'")
    return name


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError.single(f"'{value}' is not a date", field=option, hint="write the last day the codes are "
                                "good for as YYYY-MM-DD, e.g. 2026-04-30") from None


@click.group()
def coupons() -> None:
    """Pools of personal coupon codes for rules with an `offer:`.

    Each message of such a rule is given one code of its pool when it is
    sent; an order that carries the code is attributed to that message.

    \b
    Example:
      outreach coupons generate spring15 --count 5000 --prefix SP15-
      outreach coupons export spring15 --output spring15.csv   # load them into the shop
      outreach coupons list
    """


@coupons.command("generate")
@click.argument("pool")
@click.option("--count", type=click.IntRange(1, 10_000_000), required=True, help="How many new codes.")
@click.option("--prefix", default="", show_default=False, help="Put before every code, e.g. SP15- (capitals, "
              "digits, - and _).")
@click.option("--length", type=click.IntRange(8, 32), default=10, show_default=True,
              help="Random characters per code (30 possible each: 10 make about 6·10^14 codes).")
@click.option("--expires", metavar="YYYY-MM-DD", help="The last day the codes are good for.")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def generate(ctx: click.Context, pool: str, count: int, prefix: str, length: int, expires: str | None,
             now: str | None, fmt: str) -> None:
    """Add COUNT new unguessable codes to POOL (made if new).

    Codes are drawn with Python's `secrets` from 2–9 and A–Z without I, L, O
    and U (nothing to misread), and are unique across all pools.

    \b
    Example:
      outreach coupons generate spring15 --count 5000
      outreach coupons generate vip-gift --count 200 --prefix VIP- --length 12 --expires 2026-12-31
    """
    from outreach.store import coupons as store
    from outreach.store.engine import transaction

    _pool(pool)
    prefix = prefix.strip().upper()
    if prefix and not store.PREFIX.match(prefix):
        raise InputError.single(f"'{prefix}' is not a code prefix", field="--prefix",
                                hint="at most 24 capitals, digits, '-' and '_', starting with a capital or a digit")
    last_day = _day(expires, "--expires")
    moment, _ = now_option(now)
    with transaction(open_engine(app_settings(ctx))) as session:
        added = store.generate(session, pool, count=count, now=moment, length=length, prefix=prefix,
                               expires_on=last_day)
        counts = store.pool_counts(session, today=moment.date(), pool=pool)[0]
    if fmt == "json":
        emit_json({"pool": pool, "generated": added, "total": counts.total, "free": counts.free})
        return
    console.print(f"{pool}: {added:,} code(s) generated; the pool holds {counts.total:,}, {counts.free:,} free",
                  highlight=False)


@coupons.command("import")
@click.argument("pool")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def import_(ctx: click.Context, pool: str, file: Path, now: str | None, fmt: str) -> None:
    """Import the shop's codes from a CSV file into POOL (made if new).

    Columns: code (required), expires (the last day, YYYY-MM-DD; optional).
    Every bad row is reported with its row, column and a hint, and then
    nothing is imported. FILE is - to read standard input.

    \b
    Example:
      outreach coupons import spring15 spring15-codes.csv
      printf 'code,expires\\nSP15-7KQ4M9XT,2026-04-30\\n' | outreach coupons import spring15 -
    """
    from outreach.importing import import_coupons

    _pool(pool)
    moment, _ = now_option(now)
    from_stdin = str(file) == STDIN
    if not from_stdin and not file.is_file():
        raise InputError.single("there is no such file", file=str(file), hint="check the path and the file name")
    result = import_coupons(open_engine(app_settings(ctx)), pool, Path("<stdin>") if from_stdin else file,
                            stream=sys.stdin.buffer if from_stdin else None, now=moment,
                            progress=sys.stderr.isatty())
    if fmt == "json":
        emit_json({"pool": pool, "rows": result.rows, "inserted": result.inserted, "updated": result.updated})
        return
    console.print(f"{pool}: {result.rows:,} row(s), {result.inserted:,} code(s) added, {result.updated:,} updated",
                  highlight=False)


@coupons.command("list")
@click.argument("pool", required=False)
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def list_(ctx: click.Context, pool: str | None, now: str | None, fmt: str) -> None:
    """Each pool: codes in all, free, used (given to a message), redeemed
    (by an order; later orders with the same code are duplicate uses),
    expired (never given, past their last day), and the rules that name it.

    \b
    Example:
      outreach coupons list
      outreach coupons list --format json | jq '.[] | select(.free < 100) | .pool'
    """
    from rich.table import Table

    from outreach.store import coupons as store
    from outreach.store.engine import transaction

    moment, _ = now_option(now)
    with transaction(open_engine(app_settings(ctx))) as session:
        found = store.pool_counts(session, today=moment.date(), pool=_pool(pool) if pool else None)
    if pool and not found:
        raise InputError.single(f"no pool named '{pool}'", field="POOL",
                                hint=f"make it with `outreach coupons generate {pool} --count N` or "
                                     f"`outreach coupons import {pool} FILE.csv`")
    if fmt == "json":
        emit_json(found)
        return
    table = Table(title=f"Coupon pools on {moment:%Y-%m-%d}")
    for column in ("pool", "codes", "free", "used", "redeemed", "duplicate uses", "expired", "rules"):
        table.add_column(column, justify="left" if column in ("pool", "rules") else "right")
    for p in found:
        table.add_row(escape(p.pool), f"{p.total:,}", f"{p.free:,}", f"{p.used:,}", f"{p.redeemed:,}",
                      f"{p.duplicate_uses:,}", f"{p.expired:,}", escape(", ".join(p.rules)) or "-")
    console.print(table)


@coupons.command("export")
@click.argument("pool")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (default: "
              "standard output).")
@click.pass_context
@friendly
def export(ctx: click.Context, pool: str, output: Path | None) -> None:
    """Write POOL's codes as CSV (code, expires) — to load generated codes
    into the shop, which must accept them at checkout.

    \b
    Example:
      outreach coupons export spring15 --output spring15.csv
    """
    from outreach.store import coupons as store
    from outreach.store.engine import transaction

    with transaction(open_engine(app_settings(ctx))) as session:
        codes = store.codes_of(session, _pool(pool))
    if not codes:
        raise InputError.single(f"pool '{pool}' has no codes", field="POOL",
                                hint="see the pools with `outreach coupons list`")
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        writer = csv.writer(stream)
        writer.writerow(["code", "expires"])
        writer.writerows([code, expires.isoformat() if expires else ""] for code, expires, _ in codes)
    finally:
        if output:
            stream.close()
    if output:
        console.print(f"{pool}: {len(codes):,} code(s) written to {output}", highlight=False)


COMMANDS = (coupons,)

"""Offers at send time: each message of a rule with an ``offer:`` gets its
personal code in the claim's transaction, before it is rendered.

Only messages that passed the permission re-check take a code (a skipped
customer uses none; held-out customers are never claimed). A message that
holds a code already — retried after an outage, taken back from a worker
that died, delivered twice by the broker — keeps it. A message that cannot
have a good code is not sent: it fails with the reason (the pool ran dry,
the offer ended, its code expired while it waited), and a campaign whose
messages mostly fail pauses itself, as for any failure; ``outreach campaign
retry RULE`` sends them once the pool has codes again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from outreach.rules.spec import RuleSpec
from outreach.store import coupons, redemptions
from outreach.store.claims import Claimed


def give_codes(conn: Connection, rows: Sequence[Claimed], specs: Mapping[int, RuleSpec], *,
               now: datetime) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """(what templates see as ``offer``, by message id; why a message cannot
    be sent, by message id) for the claimed ``rows`` of offer rules. ``now``:
    the send time (a run's ``--now``, else the wall clock)."""
    wanted, refused = [], {}
    for row in rows:
        offer = specs[row.rule_id].offer
        if offer is None or row.refusal(now) is not None:
            continue  # no offer, or skipped anyway: no code taken
        if offer.ended(now):
            refused[row.id] = f"offer ended on {offer.expires}: not sent"
        else:
            wanted.append((row.id, offer))
    if not wanted:
        return {}, refused
    given, new = coupons.give(conn, wanted, now=now)
    redemptions.record_for_coupons(conn, new, now=now)
    offers: dict[int, dict[str, Any]] = {}
    for message_id, offer in wanted:
        code = given.get(message_id)
        if code is None:
            refused[message_id] = (f"{coupons.NO_CODE} in pool '{offer.pool}' (hint: add codes with "
                                   f"`outreach coupons generate {offer.pool} --count N` or `outreach coupons import "
                                   f"{offer.pool} FILE.csv`, then `outreach campaign retry RULE`)")
        elif code.expires_on is not None and code.expires_on < now.date():
            refused[message_id] = f"its coupon code expired on {code.expires_on} before it could be sent"
        else:
            offers[message_id] = offer.context(code.code, code.expires_on)
    return offers, refused

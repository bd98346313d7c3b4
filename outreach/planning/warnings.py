"""Checks of rules against today's data, for ``rules validate``: a segment
that matches none of the customers is almost always a typo in a value; an
offer whose pool has no code left, or whose last day is over, sends nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from outreach.errors import Problem, RuleError
from outreach.planning.prepare import prepare
from outreach.rules import LoadedRule, RuleSet
from outreach.rules.checks import line_of
from outreach.store import coupons
from outreach.store.models import Customer
from outreach.store.segments import compile_condition


def data_warnings(rules: list[LoadedRule], ruleset: RuleSet, *, engine: Engine, now: datetime) -> list[Problem]:
    """One warning per rule whose segment matches nobody as of ``now``
    (nothing is written: the transaction is rolled back)."""
    warnings: list[Problem] = []
    segmented = [loaded for loaded in rules if loaded.spec.segment is not None]
    with Session(engine) as session, session.begin():
        total = session.scalar(select(func.count(Customer.id))) or 0
        if total and segmented:
            prepare(session, [loaded.spec for loaded in segmented], now=now, ruleset=ruleset)
            for loaded in segmented:
                try:
                    matched = session.scalar(
                        select(func.count(Customer.id)).where(
                            compile_condition(loaded.spec.segment, now, segments=ruleset.segments))
                    )
                except RuleError:
                    continue  # reported as an error by the static checks
                if not matched:
                    warnings.append(Problem(
                        f"the segment matches none of the {total} customers today",
                        file=str(loaded.path), line=line_of(loaded, "segment:"), severity="warning",
                        hint="check the values against your data with `outreach rules preview`",
                    ))
        warnings += offer_warnings(session, rules, now=now)
        session.rollback()
    return warnings


def offer_warnings(session: Session, rules: list[LoadedRule], *, now: datetime) -> list[Problem]:
    """Offers that cannot send today: their last day is over, or their pool has no free code."""
    warnings: list[Problem] = []
    for loaded in rules:
        offer = loaded.spec.offer
        if offer is None:
            continue
        file, line = str(loaded.path), line_of(loaded, "offer:")
        if offer.ended(now):
            warnings.append(Problem(f"the offer ended on {offer.expires}: nothing will be planned", file=file,
                                    line=line, severity="warning",
                                    hint="move 'expires:' to a later day, or disable the rule"))
        elif not coupons.free_codes(session, offer.pool, today=now.date()):
            warnings.append(Problem(
                f"pool '{offer.pool}' has no free coupon code: no message of this rule can be sent", file=file,
                line=line, severity="warning", hint=f"outreach coupons generate {offer.pool} --count N, or "
                f"outreach coupons import {offer.pool} FILE.csv"))
    return warnings

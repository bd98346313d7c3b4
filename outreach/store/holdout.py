"""Who is in a rule's control group, and which variant a customer gets.

Both are deterministic — the same customer lands in the same group of a rule
on every run and every database — and computed by the database for the
whole audience at once; :func:`is_held_out` and :func:`variant_of` state in
Python what the SQL computes.

Two assignment schemes, recorded per rule on its ``rules`` row
(``rules.assignment``), so that nobody switches groups in the middle of an
experiment:

* ``sha256`` (every rule new since migration 0016): the bucket is the first
  32 bits of SHA-256 over ``holdout:<rule>:<customer's external id>``. A
  hash of the rule's name and the customer is a different, unrelated
  function for each rule, so two rules' control groups are independent: two
  10 % holdouts share 1 % of customers, whatever the names. Variants use the
  same hash over ``variant:<rule>:<external id>``, independent of the holdout.
* ``legacy`` (rules that existed before): ``(customer id × K + salt(rule))
  mod 2³²`` — two rules' groups overlap by an amount that depends on their
  salts (often not at all, sometimes almost entirely). A rule keeps it until
  ``outreach campaign regroup`` moves it, between experiments.

Not keyed by the installation's secret: a secret rotated (or a database
moved to another installation by a re-import) would otherwise move every
customer to another group mid-experiment, and an analyst could not recompute
the groups from an export. Knowing a rule's name and a customer's id tells
whether they are held out; a customer cannot choose either, and being held
out only means hearing nothing from that rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.errors import InputError
from outreach.store.dialect import hash32, sha256_32
from outreach.store.models import Customer, Message, Rule

#: Assignment schemes (``rules.assignment``).
LEGACY = "legacy"
HASHED = "sha256"
#: Multiplier of the legacy hash (Knuth's golden-ratio constant, odd, < 2^32).
HOLDOUT_MULTIPLIER = 2654435761
HOLDOUT_MODULUS = 2**32


def holdout_salt(rule_name: str) -> int:
    return int.from_bytes(hashlib.sha256(rule_name.encode()).digest()[:4], "big")


def holdout_threshold(percent: float) -> int:
    return round(percent / 100 * HOLDOUT_MODULUS)


def _message(purpose: str, rule_name: str) -> str:
    # A rule name is a slug (no ':'), so "<purpose>:<rule>:<customer>" reads one way only.
    return f"{purpose}:{rule_name}:"


def bucket_of(rule_name: str, customer: int | str, scheme: str = HASHED) -> int:
    """The holdout bucket (0 … 2³²−1): ``customer`` is the external id under
    ``sha256``, the internal id under ``legacy``."""
    if scheme == LEGACY:
        if not isinstance(customer, int):
            raise TypeError("the legacy scheme hashes the customer's internal id (an int)")
        return (customer * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS
    if not isinstance(customer, str):
        raise TypeError("the sha256 scheme hashes the customer's external id (a str)")
    return int(sha256_32(_message("holdout", rule_name) + customer) or 0)


def is_held_out(rule_name: str, customer: int | str, percent: float, scheme: str = HASHED) -> bool:
    """Python statement of the SQL holdout assignment (same customer, same rule
    → same group on every run); ``customer`` as in :func:`bucket_of`."""
    return bucket_of(rule_name, customer, scheme) < holdout_threshold(percent)


def bucket(rule_name: str, scheme: str = HASHED) -> ColumnElement[int]:
    """The holdout bucket of each customer (``customers`` in the FROM clause)."""
    if scheme == LEGACY:
        return (Customer.id * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS
    return hash32(literal(_message("holdout", rule_name)) + Customer.external_id)


# ------------------------------------------------------------------ variants
def variant_thresholds(weights: Sequence[float]) -> list[int]:
    """Upper bounds of each variant's share of the 2³² buckets (the last is 2³²)."""
    total, running, bounds = sum(weights), 0.0, []
    for weight in weights:
        running += weight
        bounds.append(round(running / total * HOLDOUT_MODULUS))
    bounds[-1] = HOLDOUT_MODULUS
    return bounds


def variant_of(rule_name: str, external_id: str, variants: Sequence[tuple[str, float]]) -> str:
    """Python statement of :func:`variant_column`: ``variants`` as (name, weight)."""
    value = int(sha256_32(_message("variant", rule_name) + external_id) or 0)
    bounds = variant_thresholds([w for _, w in variants])
    return next(name for (name, _), bound in zip(variants, bounds, strict=True) if value < bound)


def variant_column(rule_name: str, variants: Sequence[tuple[str, float]]) -> ColumnElement[str]:
    """Each customer's variant by weight (``customers`` in the FROM clause)."""
    value = hash32(literal(_message("variant", rule_name)) + Customer.external_id)
    bounds = variant_thresholds([w for _, w in variants])
    return case(*[(value < bound, literal(name)) for (name, _), bound in zip(variants[:-1], bounds, strict=False)],
                else_=literal(variants[-1][0]))


# ------------------------------------------------------------------ a rule's scheme
def scheme_of(session: Session, rule_name: str) -> str:
    """The scheme a rule's groups are drawn with: its row's, or ``sha256`` for a
    rule that has never run (it gets that one when it does)."""
    found = session.scalar(select(Rule.assignment).where(Rule.name == rule_name))
    return str(found) if found else HASHED


def running_experiment(session: Session, rule_id: int, now: datetime) -> tuple[int, int, datetime | None]:
    """What of a rule is still part of an experiment at ``now``: (messages not
    yet sent, messages sent or held out whose attribution window is open, when
    the last of those windows closes)."""
    unsent = Message.status.in_([MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING])
    counting = and_(~unsent, Message.attribute_until > now)
    waiting, open_, until = session.execute(
        select(func.count(case((unsent, 1), else_=None)), func.count(case((counting, 1), else_=None)),
               func.max(case((counting, Message.attribute_until), else_=None)))
        .where(Message.rule_id == rule_id, or_(unsent, counting))).one()
    return int(waiting), int(open_), until


def regroup(session: Session, rule: Rule, *, now: datetime, force: bool = False) -> str:
    """Move ``rule`` to the ``sha256`` scheme; returns the scheme it had.
    Refused while an experiment runs (messages not yet sent, or inside their
    attribution window) unless ``force``: customers would change groups
    between the treated and the control group it is measured against."""
    before = str(rule.assignment)
    if before == HASHED:
        return before
    waiting, open_, until = running_experiment(session, rule.id, now)
    if (waiting or open_) and not force:
        parts = ([f"{waiting:,} message(s) not yet sent"] if waiting else []) + (
            [f"{open_:,} inside their attribution window until {until:%Y-%m-%d %H:%M} UTC"] if open_ else [])
        raise InputError.single(
            f"rule '{rule.name}' is mid-experiment ({' and '.join(parts)}): moving it now would move "
            "customers between its groups", field="RULE",
            hint="pause the campaign, let its messages go out (or cancel them) and the windows close, then run "
                 "it again; or add --force to accept a mixed experiment")
    rule.assignment = HASHED
    return before

"""The control group: which eligible customers of a rule are held out.

Deterministic — a hash of the customer id salted by the rule name — so the
same customer is in the same group of a rule on every run and every
database; :func:`is_held_out` states in Python what the SQL computes.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement

from outreach.store.models import Customer

#: Multiplier of the holdout hash (Knuth's golden-ratio constant, odd, < 2^32).
HOLDOUT_MULTIPLIER = 2654435761
HOLDOUT_MODULUS = 2**32


def holdout_salt(rule_name: str) -> int:
    return int.from_bytes(hashlib.sha256(rule_name.encode()).digest()[:4], "big")


def holdout_threshold(percent: float) -> int:
    return round(percent / 100 * HOLDOUT_MODULUS)


def is_held_out(rule_name: str, customer_id: int, percent: float) -> bool:
    """Python statement of the SQL holdout assignment (same customer, same rule
    → same group on every run)."""
    bucket = (customer_id * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS
    return bucket < holdout_threshold(percent)


def bucket(rule_name: str) -> ColumnElement[int]:
    return (Customer.id * HOLDOUT_MULTIPLIER + holdout_salt(rule_name)) % HOLDOUT_MODULUS

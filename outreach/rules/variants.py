"""A/B tests in the rule language: a rule's message in several versions
(``variants:``), each customer given one by weight, and the optional
automatic winner (``winner:``) that ends the test.

    variants:
      - {name: a, weight: 50}                       # the rule's template
      - {name: b, template: winback-b, weight: 50}
    winner: {metric: conversion, sample_per_variant: 2000, confidence: 0.95}

Which customer gets which variant is drawn like the control group, by a
hash of the rule and the customer (``outreach.store.holdout``); how a winner
is decided is ``outreach.planning.abtest``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from outreach.rules.model import Strict

VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Each variant's sample must be at least this large: fewer sends make the
#: test's normal approximations (and any verdict) meaningless.
MIN_SAMPLE = 30


class Variant(Strict):
    """One version of the rule's message."""

    #: How reports and ``campaign status`` name it (a, b, short-subject …).
    name: str
    #: The template folder it sends; the rule's ``template:`` when not given.
    template: str | None = None
    #: Its share of the treated customers, relative to the other variants' weights.
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not VARIANT_NAME.match(value):
            raise ValueError("a variant name uses lower-case letters, digits, '-' and '_' (e.g. b or short-subject)")
        return value


class AutoWinner(Strict):
    """Declare the winning variant once each variant has a fixed sample of
    sends whose attribution windows have closed, then send the rest of the
    audience the winner. Each pair of variants is compared by a two-sided
    test at ``confidence``, Bonferroni-corrected for the number of pairs; a
    variant wins when it beats every other one. Decided once: no winner
    means the test ended without one and the weights stay as written."""

    #: What is compared: ``conversion`` (share of sends followed by an order
    #: in the window) or ``revenue`` (order amounts in the window per send).
    metric: Literal["conversion", "revenue"] = "conversion"
    #: Sends per variant the test waits for (its fixed sample).
    sample_per_variant: Annotated[int, Field(ge=MIN_SAMPLE, le=10_000_000)]
    #: Confidence of the family of comparisons (0.95: at most a 5 % chance of
    #: declaring a winner among variants that do not differ).
    confidence: Annotated[float, Field(ge=0.8, lt=1)] = 0.95


def check_variants(value: list[Variant] | None) -> list[Variant] | None:
    """At least two variants, each name once."""
    if value is None:
        return None
    if len(value) < 2:
        raise ValueError("an A/B test needs at least two variants; for one version of the message "
                         "remove 'variants:' and keep 'template:'")
    seen: dict[str, int] = {}
    for index, variant in enumerate(value):
        if variant.name in seen:
            raise ValueError(f"the variant name '{variant.name}' is used twice (variants.{seen[variant.name]} "
                             f"and variants.{index}); use another name for one of them")
        seen[variant.name] = index
    return value


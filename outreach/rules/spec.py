"""One rule file (``RuleSpec``) and rules/segments.yaml (``SegmentsFile``).

The JSON Schemas in ``docs/`` are generated from these models
(``outreach rules schema``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from outreach.domain import Channel, Topic
from outreach.rules.conditions import Condition
from outreach.rules.model import Strict
from outreach.rules.offers import Offer
from outreach.rules.policy import SendWindow, check_margin
from outreach.rules.triggers import LifecycleTrigger, SegmentEntryTrigger, Trigger
from outreach.rules.variants import AutoWinner, Variant, check_variants

RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


class ChannelCosts(Strict):
    """Cost of one message (for SMS: of one segment) in the report currency."""

    email: Annotated[Decimal, Field(ge=0)] = Decimal("0")
    sms: Annotated[Decimal, Field(ge=0)] = Decimal("0")


class RuleSpec(Strict):
    """One rule: who hears what, when, on which channel."""

    name: str
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    segment: Condition | None = None
    template: str
    channels: list[Channel] = Field(min_length=1)
    #: No second message from this rule to the same customer within N days.
    cooldown_days: Annotated[int, Field(ge=0)] = 30
    #: Orders within N days after a send are attributed to the message.
    attribution_window_days: Annotated[int, Field(ge=1, le=365)] = 7
    cost: ChannelCosts = ChannelCosts()
    #: A fixed cost of the campaign (design, agency, set-up), in the reporting
    #: currency: the ROI report adds it to the per-message costs and the discounts.
    fixed_cost: Annotated[Decimal, Field(ge=0)] = Decimal("0")
    #: The share of revenue that is profit (0–1), for the report's ROI; unset:
    #: ``margin`` in rules/policy.yaml, else 1 (ROI on revenue).
    margin: Decimal | None = None
    #: Percentage of eligible customers kept as a control group (never sent).
    holdout_percent: Annotated[float, Field(ge=0, le=100)] = 0
    priority: int = 0
    #: Transactional (an order confirmation): its own queue, worked ahead of
    #: marketing sends, and exempt from the frequency cap — never from
    #: consent or suppression.
    transactional: bool = False
    #: What the messages are about (``offers``, ``care``, ``news``, ``feedback``):
    #: a customer who turned the topic off on their preference page gets none.
    #: A transactional rule has no topic (it is never marketing).
    topic: Topic | None = None
    #: The message asks for a score: ``nps`` (0–10) or ``satisfaction`` (1–5),
    #: answered by an SMS reply of the score or a ``survey_url(score)`` link.
    survey: Literal["nps", "satisfaction"] | None = None
    #: Cron expression for ``outreach scheduler`` (e.g. "0 9 * * *").
    schedule: str | None = None
    #: Allowed local send time; default from policy (SMS 09:00–21:00).
    send_window: SendWindow | None = None
    #: An A/B test: the message in several versions, each treated customer one by weight.
    variants: list[Variant] | None = None
    #: End the A/B test after a fixed sample per variant and send the rest the winner.
    winner: AutoWinner | None = None

    #: A personal coupon code in every message, from a pool (``{{ offer.code }}``);
    #: an order that redeems it is attributed to the message exactly.
    offer: Offer | None = None

    def template_for(self, variant: str | None) -> str:
        """The template a message of ``variant`` (None: no variant) renders."""
        for candidate in self.variants or ():
            if candidate.name == variant:
                return candidate.template or self.template
        return self.template

    @property
    def templates(self) -> list[str]:
        """Every template the rule may send: its own, then its variants'."""
        return list(dict.fromkeys([self.template, *[self.template_for(v.name) for v in self.variants or ()]]))

    @property
    def weights(self) -> list[tuple[str, float]]:
        """The variants as (name, weight); empty without an A/B test."""
        return [(v.name, v.weight) for v in self.variants or ()]

    @property
    def membership_key(self) -> str | None:
        """The memberships key an entry trigger watches (None for other triggers)."""
        if isinstance(self.trigger, LifecycleTrigger):
            return f"lifecycle:{self.trigger.stage}"
        if isinstance(self.trigger, SegmentEntryTrigger):
            return f"segment:{self.name}"
        return None

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not RULE_NAME.match(value):
            raise ValueError(
                "a rule name uses lower-case letters, digits, '-' and '_' (e.g. winback-90)"
            )
        return value

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("each channel may be listed once")
        return value

    @field_validator("topic")
    @classmethod
    def _marketing_only(cls, value: Topic | None, info: ValidationInfo) -> Topic | None:
        if value is not None and info.data.get("transactional"):
            raise ValueError("a transactional rule has no topic: customers cannot turn off messages "
                             "about their own orders; remove 'topic:' or set 'transactional: false'")
        return value

    @field_validator("margin")
    @classmethod
    def _share(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else check_margin(value)

    @field_validator("fixed_cost")
    @classmethod
    def _no_cents_lost(cls, value: Decimal) -> Decimal:
        if value.as_tuple().exponent < -2:  # type: ignore[operator]
            raise ValueError(f"{value}: an amount has at most two decimal places (e.g. 500 or 499.90)")
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Variant] | None) -> list[Variant] | None:
        return check_variants(value)

    @field_validator("winner")
    @classmethod
    def _needs_variants(cls, value: AutoWinner | None, info: ValidationInfo) -> AutoWinner | None:
        if value is not None and "variants" in info.data and not info.data["variants"]:
            raise ValueError("an automatic winner needs an A/B test: add 'variants:' (two or more) or remove 'winner:'")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression like '0 9 * * *'")
        return value


class SegmentsFile(Strict):
    """rules/segments.yaml: named segments, referenced as ``segment: name``."""

    segments: dict[str, Condition]


for _model in (RuleSpec, SegmentsFile):
    _model.model_rebuild()

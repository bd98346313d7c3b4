"""Triggers: why and when a customer hears from a rule.

Each trigger type is one model here (listed in ``Trigger``) and one SQL
compiler in ``outreach.store.triggers`` selecting (customer, occurrence).
The *occurrence* names the reason a customer is eligible; one reason
produces at most one message, ever.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field, field_validator

from outreach.domain import LIFECYCLE_STAGES
from outreach.rules.conditions import Condition, ProductMatch, WindowedProducts
from outreach.rules.model import Comparison, Strict


class InactivityTrigger(Strict):
    """No order (or no ``event`` of that name) for ``days`` days. One occurrence
    per lapse and step: ``days: [30, 60, 90]`` sends at most one message per
    threshold, the highest reached, keyed by the last order/event."""

    type: Literal["inactivity"]
    days: Annotated[int, Field(ge=1, le=3650)] | list[Annotated[int, Field(ge=1, le=3650)]]
    event: str | None = None

    @property
    def steps(self) -> list[int]:
        return sorted(set(self.days)) if isinstance(self.days, list) else [self.days]


class UpsellProducts(WindowedProducts):
    #: A qualifying order has at least this many matching units …
    min_quantity: Annotated[int, Field(ge=1)] | None = None
    #: … and/or at least this much spent on matching items.
    min_amount: Annotated[Decimal, Field(ge=0)] | None = None


class UpsellTrigger(Strict):
    """Bought X within the window, never bought Y. One occurrence per qualifying order."""

    type: Literal["upsell", "cross_sell"]
    bought: UpsellProducts
    never_bought: ProductMatch

    @field_validator("bought")
    @classmethod
    def _default_window(cls, value: UpsellProducts) -> UpsellProducts:
        if value.within_days is None:
            return value.model_copy(update={"within_days": DEFAULT_UPSELL_WINDOW_DAYS})
        return value


#: An upsell looks at purchases of the last 30 days unless the rule says otherwise.
DEFAULT_UPSELL_WINDOW_DAYS = 30


class BirthdayTrigger(Strict):
    """The customer's birthday, today in their own time zone (29 Feb → 28 Feb
    in common years). One occurrence per year."""

    type: Literal["birthday"]
    days_before: Annotated[int, Field(ge=0, le=60)] = 0


class AnniversaryTrigger(Strict):
    """The yearly anniversary of signup or of the first order, in the
    customer's time zone (29 Feb → 28 Feb). One occurrence per year."""

    type: Literal["anniversary"]
    of: Literal["signup", "first_order"] = "signup"
    days_before: Annotated[int, Field(ge=0, le=60)] = 0


class EventTrigger(Strict):
    """A custom event (``cart_abandoned``) at least ``delay_minutes`` old and at
    most ``max_age_hours``, unless a ``cancel_on`` event (or an order, with
    ``order``) followed it. One occurrence per event."""

    type: Literal["event"]
    name: str
    where: dict[str, Comparison] = Field(default_factory=dict)
    delay_minutes: Annotated[int, Field(ge=0)] = 0
    max_age_hours: Annotated[int, Field(ge=1)] = 72
    cancel_on: list[str] = Field(default_factory=list)


class LifecycleTrigger(Strict):
    """Entering a lifecycle stage (new, active, at_risk, inactive, …).
    One occurrence per entry; customers already in the stage the first time
    it is evaluated are the baseline and are not messaged."""

    type: Literal["lifecycle"]
    stage: str
    #: Only entries of the last N days are messaged.
    max_age_days: Annotated[int, Field(ge=1)] = 7

    @field_validator("stage")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in LIFECYCLE_STAGES:
            raise ValueError(f"unknown stage '{value}'; use {', '.join(LIFECYCLE_STAGES)}")
        return value


class SegmentEntryTrigger(Strict):
    """Entering a segment (the rule's ``segment:`` or ``enters:``). One
    occurrence per entry; the first evaluation records a baseline."""

    type: Literal["segment_entry"]
    enters: Condition
    max_age_days: Annotated[int, Field(ge=1)] = 7


Trigger = Annotated[
    (
        InactivityTrigger
        | UpsellTrigger
        | BirthdayTrigger
        | AnniversaryTrigger
        | EventTrigger
        | LifecycleTrigger
        | SegmentEntryTrigger
    ),
    Field(discriminator="type"),
]
#: Every trigger ``type:`` → its model (``upsell`` and ``cross_sell`` share one).
TRIGGER_MODELS: dict[str, type[BaseModel]] = {
    name: model
    for model in get_args(get_args(Trigger)[0])
    for name in get_args(model.model_fields["type"].annotation)
}
TRIGGER_TYPES = tuple(TRIGGER_MODELS)

SegmentEntryTrigger.model_rebuild()



"""The rule language, as typed models.

A rule file is YAML; these models define what it may say. The JSON Schema
published in ``docs/rule.schema.json`` is generated from them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from outreach.domain import LIFECYCLE_STAGES, RFM_GROUP_NAMES, Channel, CustomerType

#: Customer columns a ``field`` condition may compare (plus ``attributes.<key>``).
CUSTOMER_FIELDS = (
    "external_id",
    "name",
    "email",
    "phone",
    "birthday",
    "timezone",
    "locale",
    "customer_type",
    "created_at",
)
COMPARISONS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")

Scalar = Union[str, int, float, bool]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Comparison(Strict):
    """Comparison operators shared by field and aggregate conditions."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None

    def operators(self) -> dict[str, Any]:
        return {
            name: value
            for name in COMPARISONS
            if name != "exists"
            and (value := getattr(self, "in_" if name == "in" else name)) is not None
        }

    @model_validator(mode="after")
    def _needs_operator(self) -> Comparison:
        if not self.operators() and getattr(self, "exists", None) is None:
            raise ValueError(f"needs at least one comparison: {', '.join(COMPARISONS)}")
        return self


class FieldCondition(Comparison):
    """``field: customer_type`` with ``in: [retail]`` (or ``attributes.city``)."""

    field: str
    exists: bool | None = None

    @model_validator(mode="after")
    def _known_customer_type(self) -> FieldCondition:
        if self.field == "customer_type":
            allowed = [t.value for t in CustomerType]
            for value in self.operators().values():
                for item in value if isinstance(value, list) else [value]:
                    if item not in allowed:
                        raise ValueError(
                            f"unknown customer type '{item}'; use {', '.join(allowed)}"
                        )
        return self

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if value in CUSTOMER_FIELDS or (value.startswith("attributes.") and len(value) > 11):
            return value
        raise ValueError(
            f"unknown customer field '{value}'; use one of {', '.join(CUSTOMER_FIELDS)} "
            "or attributes.<name>"
        )


class TagCondition(Strict):
    """``tag: vip`` — the customer has the tag (or any of a list)."""

    tag: str | list[str]


class OrdersAggregate(Comparison):
    metric: Literal["count", "total", "average", "days_since_last", "days_since_first"]
    #: Only orders of the last N days count; omit for all history.
    within_days: Annotated[int, Field(ge=1)] | None = None


class OrdersCondition(Strict):
    """``orders: {metric: total, within_days: 365, gte: 500}``."""

    orders: OrdersAggregate


class ProductMatch(Strict):
    sku: list[str] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)

    @field_validator("sku", "category", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _needs_product(self) -> ProductMatch:
        if not self.sku and not self.category:
            raise ValueError("name at least one sku or category")
        return self


class WindowedProducts(ProductMatch):
    within_days: Annotated[int, Field(ge=1)] | None = None


class BoughtCondition(Strict):
    """``bought: {category: tea, within_days: 90}``."""

    bought: WindowedProducts


class StatsCondition(Strict):
    """``stats: {rfm_segment: [champions, loyal]}`` or ``{r_score: {gte: 4}}`` —
    maintained per-customer aggregates (see docs/rules.md)."""

    stats: StatsFilter


class StatsFilter(Strict):
    r_score: Comparison | None = None
    f_score: Comparison | None = None
    m_score: Comparison | None = None
    rfm_segment: list[str] | None = None
    value_tier: Literal["vip", "regular"] | None = None
    lifecycle_stage: list[str] | None = None
    clv: Comparison | None = None
    order_count: Comparison | None = None
    revenue: Comparison | None = None

    @field_validator("rfm_segment", "lifecycle_stage", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("rfm_segment")
    @classmethod
    def _known_group(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in RFM_GROUP_NAMES:
                raise ValueError(f"unknown RFM group '{name}'; use {', '.join(RFM_GROUP_NAMES)}")
        return value

    @field_validator("lifecycle_stage")
    @classmethod
    def _known_stage(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in LIFECYCLE_STAGES:
                raise ValueError(f"unknown lifecycle stage '{name}'; use {', '.join(LIFECYCLE_STAGES)}")
        return value

    @model_validator(mode="after")
    def _needs_one(self) -> StatsFilter:
        if not self.model_fields_set:
            raise ValueError("name at least one of: " + ", ".join(StatsFilter.model_fields))
        return self


class SegmentRef(Strict):
    """``segment: tea-lovers`` — a named segment from rules/segments.yaml."""

    segment: str


class AllCondition(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")


CONDITION_KEYS = {
    "field": "field",
    "tag": "tag",
    "orders": "orders",
    "bought": "bought",
    "stats": "stats",
    "segment": "segment",
    "all": "all",
    "any": "any",
    "not": "not",
}


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for key, model in CONDITION_MODELS.items():
            if isinstance(value, model):
                return key
        return None
    if isinstance(value, dict):
        for key in CONDITION_KEYS:
            if key in value:
                return key
    return None


Condition = Annotated[
    Union[
        Annotated[FieldCondition, Tag("field")],
        Annotated[TagCondition, Tag("tag")],
        Annotated[OrdersCondition, Tag("orders")],
        Annotated[BoughtCondition, Tag("bought")],
        Annotated[StatsCondition, Tag("stats")],
        Annotated[SegmentRef, Tag("segment")],
        Annotated[AllCondition, Tag("all")],
        Annotated[AnyCondition, Tag("any")],
        Annotated[NotCondition, Tag("not")],
    ],
    Discriminator(
        _condition_kind,
        custom_error_type="unknown_condition",
        custom_error_message=(
            "a condition starts with one of: field, tag, orders, bought, stats, segment, all, any, not"
        ),
    ),
]

CONDITION_MODELS: dict[str, type[BaseModel]] = {
    "field": FieldCondition,
    "tag": TagCondition,
    "orders": OrdersCondition,
    "bought": BoughtCondition,
    "stats": StatsCondition,
    "segment": SegmentRef,
    "all": AllCondition,
    "any": AnyCondition,
    "not": NotCondition,
}


# ------------------------------------------------------------------ triggers
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
    Union[
        InactivityTrigger,
        UpsellTrigger,
        BirthdayTrigger,
        AnniversaryTrigger,
        EventTrigger,
        LifecycleTrigger,
        SegmentEntryTrigger,
    ],
    Field(discriminator="type"),
]
TRIGGER_TYPES = (
    "inactivity", "upsell", "cross_sell", "birthday", "anniversary", "event", "lifecycle",
    "segment_entry",
)


class SendWindow(Strict):
    """Local time of day (customer's time zone) when sending is allowed."""

    start: str = "09:00"
    end: str = "21:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"'{value}' is not a time like 09:00")
        return value


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
    #: Percentage of eligible customers kept as a control group (never sent).
    holdout_percent: Annotated[float, Field(ge=0, le=100)] = 0
    priority: int = 0
    #: Cron expression for ``outreach scheduler`` (e.g. "0 9 * * *").
    schedule: str | None = None
    #: Allowed local send time; default from policy (SMS 09:00–21:00).
    send_window: SendWindow | None = None

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

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression like '0 9 * * *'")
        return value


class FrequencyCap(Strict):
    """At most ``max_messages`` per customer per ``days`` across channels, and
    ``per_channel`` limits; the higher-priority rule keeps its place."""

    max_messages: Annotated[int, Field(ge=1)] | None = None
    days: Annotated[int, Field(ge=1)] = 7
    per_channel: dict[Channel, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)


class LifecyclePolicy(Strict):
    new_days: Annotated[int, Field(ge=1)] = 183
    active_orders: Annotated[int, Field(ge=1)] = 2
    active_days: Annotated[int, Field(ge=1)] = 365
    at_risk_days: Annotated[int, Field(ge=1)] = 90
    inactive_days: Annotated[int, Field(ge=1)] = 183
    clv_years: Annotated[int, Field(ge=1)] = 3
    win_back_days: Annotated[int, Field(ge=1)] = 30


class Policy(Strict):
    """rules/policy.yaml: rules that apply across rules."""

    frequency_cap: FrequencyCap = FrequencyCap()
    send_windows: dict[Channel, SendWindow] = Field(
        default_factory=lambda: {Channel.SMS: SendWindow(start="09:00", end="21:00")}
    )
    lifecycle: LifecyclePolicy = LifecyclePolicy()


class SegmentsFile(Strict):
    """rules/segments.yaml: named segments, referenced as ``segment: name``."""

    segments: dict[str, Condition]


for _model in (AllCondition, AnyCondition, NotCondition, StatsCondition, SegmentEntryTrigger,
               RuleSpec, SegmentsFile):
    _model.model_rebuild()

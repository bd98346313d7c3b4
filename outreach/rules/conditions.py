"""Segment conditions: who a rule is for, as the marketer writes it.

A condition is a mapping whose first key says what it tests (``field``,
``tag``, ``orders``, ``bought``, ``stats``, ``segment``) or how it combines
others (``all``, ``any``, ``not``). ``outreach.store.segments`` compiles each
to SQL; adding a condition means a model here (in ``Condition`` and
``CONDITION_MODELS``), its compiler there, and their tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_validator

from outreach.domain import LIFECYCLE_STAGES, RFM_GROUP_NAMES, CustomerType
from outreach.rules.model import Comparison, Strict

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
    value_tier: Literal["vip", "regular"] | None = None  # outreach.domain.VALUE_TIERS
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


def condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for key, model in CONDITION_MODELS.items():
            if isinstance(value, model):
                return key
        return None
    if isinstance(value, dict):
        for key in CONDITION_MODELS:
            if key in value:
                return key
    return None


Condition = Annotated[
    (
        Annotated[FieldCondition, Tag("field")]
        | Annotated[TagCondition, Tag("tag")]
        | Annotated[OrdersCondition, Tag("orders")]
        | Annotated[BoughtCondition, Tag("bought")]
        | Annotated[StatsCondition, Tag("stats")]
        | Annotated[SegmentRef, Tag("segment")]
        | Annotated[AllCondition, Tag("all")]
        | Annotated[AnyCondition, Tag("any")]
        | Annotated[NotCondition, Tag("not")]
    ),
    Discriminator(
        condition_kind,
        custom_error_type="unknown_condition",
        custom_error_message=(
            "a condition starts with one of: field, tag, orders, bought, stats, segment, all, any, not"
        ),
    ),
]

#: The key a condition starts with → its model.
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
CONDITION_KEYS = tuple(CONDITION_MODELS)


def children(cond: Any) -> list[Any]:
    """The conditions directly inside ``cond`` (``all``, ``any``, ``not``)."""
    if isinstance(cond, AllCondition):
        return list(cond.all)
    if isinstance(cond, AnyCondition):
        return list(cond.any)
    if isinstance(cond, NotCondition):
        return [cond.not_]
    return []


for _model in (AllCondition, AnyCondition, NotCondition, StatsCondition):
    _model.model_rebuild()

"""What every part of the rule language shares: strict models and comparisons."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Comparison operators of field, aggregate and property conditions.
COMPARISONS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")

Scalar = str | int | float | bool


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



"""rules/policy.yaml: what applies across rules — the frequency cap, local
send windows (quiet hours), the lifecycle thresholds and the report's default margin."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator

from outreach.domain import Channel
from outreach.rules.model import Strict


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
    #: The share of revenue that is profit (0–1) for the ROI report, where a rule sets no ``margin:``.
    margin: Decimal = Decimal("1")

    @field_validator("margin")
    @classmethod
    def _share(cls, value: Decimal) -> Decimal:
        return check_margin(value)


def check_margin(value: Decimal) -> Decimal:
    """A margin is a share of revenue, 0 to 1."""
    if not 0 <= value <= 1:
        raise ValueError(f"{value} is not a share between 0 and 1: a margin of 40% is written 0.40 "
                         "(1 = ROI on revenue)")
    return value

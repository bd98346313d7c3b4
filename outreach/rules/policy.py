"""rules/policy.yaml: what applies across rules — the frequency cap, local
send windows (quiet hours) and the lifecycle thresholds."""

from __future__ import annotations

import re
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

"""What applies across the rules of one folder: the policy and the named segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outreach.rules.loader import load_policy, load_segments
from outreach.rules.policy import Policy


@dataclass(frozen=True)
class RuleSet:
    """rules/policy.yaml and rules/segments.yaml of a folder (defaults without them)."""

    policy: Policy | None = None
    segments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Path) -> RuleSet:
        return cls(policy=load_policy(folder), segments=load_segments(folder))

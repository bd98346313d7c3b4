"""Is a rule's control group big enough to measure a lift? Said at preview
time, before anything is sent, with how to fix it.

**The threshold.** A lift is the treated customers' conversion rate minus the
control group's. With base rates of a few per cent, the control group's rate
is the uncertain half: 100 held-out customers converting at 5 % give a 95 %
interval of about 2 % to 11 % for that rate alone (Wilson), so a lift of a
few points cannot be told from noise. Below :data:`MIN_CONTROL_GROUP` the
report's interval of the lift is wider than any lift a campaign plausibly
makes; even at it, finding a 2 pp lift on a 5 % base rate takes about 2,200
customers per group (:func:`outreach.stats.customers_needed`), which the
warning states for the rule's own base rate when its control group already
has conversions, else for :data:`ASSUMED_BASE_RATE`.

**A tiny audience is held out all the same.** The control group is drawn per
customer by a fixed hash of rule and customer (``store.holdout``): the same
customer is in the same group on every run, whatever else matched, and every
rule's draw is independent of every other's. Sending to a run's audience
because it is small would make the draw depend on who else matched that day
— a daily birthday rule matches a handful each run and would never build a
control group — and would move customers between groups from run to run.
Held-out customers of many small runs add up to a control group that
measures. So a run whose whole audience is held out sends nothing, and
preview and launch say so in words (:func:`all_held_out`) instead of
silently printing "planned 0".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from outreach.stats import customers_needed

#: Fewer held-out customers than this: too few to measure a lift (see above).
MIN_CONTROL_GROUP = 100
#: The lift, in proportion, the warning says how many customers it takes to find.
DETECTABLE_LIFT = 0.02
#: The base conversion rate assumed when the rule's control group has no conversion yet ("a few %").
ASSUMED_BASE_RATE = 0.05


@dataclass(frozen=True)
class ControlGroup:
    """A rule's control group as a preview sees it."""

    holdout_percent: float
    #: Held out by earlier runs (in the database).
    so_far: int
    #: Of those, followed by an order inside their window (the base rate's numerator).
    converted_so_far: int
    #: Who this run would hold out, and send to.
    this_run: int
    would_send: int

    @property
    def size(self) -> int:
        return self.so_far + self.this_run

    @property
    def base_rate(self) -> tuple[float, str]:
        """(rate, where it comes from): the control group's so far, or assumed."""
        if self.so_far and self.converted_so_far:
            rate = self.converted_so_far / self.so_far
            return rate, f"the control group's {rate:.1%} so far"
        return ASSUMED_BASE_RATE, f"an assumed {ASSUMED_BASE_RATE:.0%} base rate"

    @property
    def needed(self) -> int:
        """Customers per group to find a :data:`DETECTABLE_LIFT` lift at the base rate."""
        rate, _ = self.base_rate
        return customers_needed(min(1.0, rate + DETECTABLE_LIFT), rate) or 0


def all_held_out(held_out: int, sent: int, *, future: bool) -> str:
    """The note for a run whose whole audience is the control group ("" when
    something is (or would be) sent)."""
    if not held_out or sent:
        return ""
    who = "1 customer matched; held out" if held_out == 1 else f"{held_out:,} customers matched; all held out"
    return f"{who} as the control group: nothing {'would be ' if future else ''}sent"


def control_warnings(group: ControlGroup) -> list[tuple[str, str]]:
    """(warning, hint) pairs: everyone held out, a control group too small to measure."""
    found: list[tuple[str, str]] = []
    percent = f"{group.holdout_percent:g}"
    if note := all_held_out(group.this_run, group.would_send, future=True):
        found.append((note, f"the control group is drawn per customer (holdout_percent: {percent}), the same on "
                            "every run, so it adds up over runs to measure the lift; to message everyone, set "
                            "holdout_percent: 0 (the report then cannot measure a lift)"))
    if group.holdout_percent <= 0 or not (group.this_run + group.would_send):
        return found
    if group.size < MIN_CONTROL_GROUP:
        _, source = group.base_rate
        runs = (f"; at this run's {group.this_run} held out, about "
                f"{math.ceil((MIN_CONTROL_GROUP - group.size) / group.this_run):,} more runs like it"
                if group.this_run else "")
        found.append((
            f"control group of {group.size:,} customer(s) ({group.so_far:,} held out so far + {group.this_run:,} "
            f"from this run, at holdout_percent {percent}) — too small to measure a lift (need ≥ "
            f"{MIN_CONTROL_GROUP}; finding a {DETECTABLE_LIFT * 100:g} pp lift on {source} takes about "
            f"{group.needed:,} customers per group)",
            f"raise holdout_percent (50 measures a lift most precisely for a given audience), or widen the "
            f"audience (the segment or the trigger){runs}"))
    return found


__all__ = ["ASSUMED_BASE_RATE", "DETECTABLE_LIFT", "MIN_CONTROL_GROUP", "ControlGroup", "all_held_out",
           "control_warnings"]

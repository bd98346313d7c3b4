"""The rule language and its files, with located errors — no database.

    model.py       what the language shares: strict models, comparisons
    conditions.py  segment conditions (field, tag, orders, bought, stats, segment, all/any/not)
    triggers.py    trigger types (inactivity, upsell, birthday, anniversary, event, lifecycle, segment_entry)
    policy.py      rules/policy.yaml: frequency cap, send windows, lifecycle thresholds
    offers.py      a personal coupon code per message (offer: pool, discount, validity)
    spec.py        one rule file (RuleSpec) and rules/segments.yaml (SegmentsFile)
    ruleset.py     what applies across the rules of a folder (policy + named segments)
    loader.py      reading rule files: YAML with positions → models, every problem located
    problems.py    pydantic's errors → problems a marketer can act on (line, column, hint)
    checks.py      static checks across rules (unknown named segments, cooldown vs cap)
    jsonschema.py  JSON Schemas for editors
"""

from __future__ import annotations

from outreach.rules.loader import LoadedRule, load_rule, load_rules, parse_rule
from outreach.rules.ruleset import RuleSet
from outreach.rules.spec import RuleSpec

__all__ = ["LoadedRule", "RuleSet", "RuleSpec", "load_rule", "load_rules", "parse_rule"]

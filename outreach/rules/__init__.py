"""YAML rules: the language (``schema``), loading with located errors (``loader``)."""

from __future__ import annotations

from outreach.rules.loader import LoadedRule, load_rule, load_rules, parse_rule
from outreach.rules.schema import RuleSpec

__all__ = ["LoadedRule", "RuleSpec", "load_rule", "load_rules", "parse_rule"]

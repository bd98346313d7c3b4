"""JSON Schemas of the rule files, generated from the models, for editors
(YAML language server: ``# yaml-language-server: $schema=../docs/rule.schema.json``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from outreach.rules.policy import Policy
from outreach.rules.spec import RuleSpec, SegmentsFile

SCHEMAS: dict[str, tuple[type[BaseModel], str, str]] = {
    "rule": (RuleSpec, "Outreach rule", "One rule file in rules/: who hears what, when."),
    "policy": (Policy, "Outreach policy", "rules/policy.yaml: frequency cap, send windows, lifecycle."),
    "segments": (SegmentsFile, "Outreach named segments", "rules/segments.yaml: reusable segments."),
}


def json_schema(kind: str) -> dict[str, Any]:
    model, title, description = SCHEMAS[kind]
    body = model.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://outreach.example/schema/{kind}.schema.json",
        **body,
        "title": title,
        "description": description,
    }


def render(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False, sort_keys=True) + "\n"

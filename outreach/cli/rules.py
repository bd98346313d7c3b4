"""``outreach rules validate | preview | explain | schema``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from outreach.cli.common import (
    FORMAT_OPTION,
    NOW_OPTION,
    app_settings,
    console,
    emit_json,
    err_console,
    friendly,
    now_option,
    open_engine,
    problem_json,
)
from outreach.errors import EXIT_INPUT, Problem, RuleError
from outreach.rules import RuleSet


def ruleset_for(path: Path) -> RuleSet:
    """The policy and named segments of the folder a rule (or rules folder) is in."""
    from outreach.rules.loader import rules_folder

    return RuleSet.from_folder(rules_folder(path))


@click.group()
def rules() -> None:
    """Check and inspect YAML rules.

    \b
    Example:
      outreach rules validate rules/
    """


def _problems(path: Path, settings: Any, *, no_db: bool, now: str | None) -> tuple[int, list[Problem], list[Problem]]:
    """(rules checked, errors, warnings) of the rules under ``path``."""
    from outreach.planning.warnings import data_warnings
    from outreach.rules import load_rules
    from outreach.rules.checks import pool_conflicts, static_warnings, template_references, unknown_segments
    from outreach.sending.render import Renderer
    from outreach.sending.template_checks import check_template

    loaded = load_rules(path)
    ruleset = ruleset_for(path)
    renderer = Renderer(settings=settings)
    found: list[Problem] = []
    for rule in loaded:
        trigger = rule.spec.trigger
        event = getattr(trigger, "name", None) if getattr(trigger, "type", None) == "event" else None
        for template, field, line in template_references(rule):  # the rule's, and each A/B variant's
            found += [p for p in check_template(renderer, template, rule.spec.channels, rule_file=str(rule.path),
                                                rule_name=rule.spec.name, event=event, field=field, line=line,
                                                offer=rule.spec.offer)
                      if p not in found]  # rules sharing a template: its problems once
    errors = [p for p in found if p.severity == "error"] + pool_conflicts(loaded)
    errors += [p for rule in loaded for p in unknown_segments(rule, ruleset)]
    warnings = [p for p in found if p.severity != "error"] + static_warnings(loaded, ruleset)
    if not no_db and not errors:
        warnings += data_warnings(loaded, ruleset, engine=open_engine(settings), now=now_option(now)[0])
    return len(loaded), errors, warnings


@rules.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--no-db", is_flag=True, help="Skip the checks that look at today's data.")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def rules_validate(ctx: click.Context, path: Path | None, no_db: bool, now: str | None, fmt: str) -> None:
    """Check rule files (and the templates they name); print every problem.

    \b
    Example:
      outreach rules validate              # every rule in rules/
      outreach rules validate rules/winback.yaml
      outreach rules validate --format json | jq '.errors[].line'
    """
    settings = app_settings(ctx)
    target = path or settings.rules_dir
    try:
        count, errors, warnings = _problems(target, settings, no_db=no_db, now=now)
    except RuleError as exc:
        if fmt != "json":
            raise
        count, errors, warnings = 0, exc.problems, []
    if fmt == "json":
        emit_json({"ok": not errors, "path": target, "rules": count,
                   "errors": [problem_json(p) for p in errors], "warnings": [problem_json(p) for p in warnings]})
        if errors:
            sys.exit(EXIT_INPUT)
        return
    for warning in warnings:
        err_console.print(f"[bold yellow]warning[/]: {warning}", highlight=False, soft_wrap=True, markup=True)
    if errors:
        raise RuleError(errors)
    console.print(f"[green]ok[/]: {count} rule(s) valid in {target}")


@rules.command("preview")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def rules_preview(ctx: click.Context, rule_file: Path, now: str | None, fmt: str) -> None:
    """How many customers would get RULE now, by channel, and who would not and why.

    Changes nothing.

    \b
    Example:
      outreach rules preview rules/winback.yaml
      outreach rules preview rules/birthday.yaml --now 2026-02-28T09:00:00+08:00
    """
    from rich.markup import escape
    from rich.table import Table

    from outreach.planning.control import control_warnings
    from outreach.planning.preview import preview
    from outreach.rules import load_rule

    settings = app_settings(ctx)
    result = preview(open_engine(settings), load_rule(rule_file), now=now_option(now)[0],
                     ruleset=ruleset_for(rule_file))
    warnings = control_warnings(result.control_group)
    if fmt == "json":
        emit_json({**vars(result), "would_send": result.would_send, "codes_short": result.codes_short,
                   "warnings": [{"message": message, "hint": hint} for message, hint in warnings]})
        return
    for message, hint in warnings:
        err_console.print(f"[bold yellow]warning[/]: {escape(result.rule)}: {escape(message)} (hint: {escape(hint)})",
                          highlight=False, soft_wrap=True, markup=True)
    if result.codes_short:
        err_console.print(
            f"[bold yellow]warning[/]: pool '{result.offer_pool}' has {result.free_codes} free code(s) for "
            f"{result.would_send + result.waiting_for_codes} message(s): {result.codes_short} would not be sent "
            f"(hint: outreach coupons generate {result.offer_pool} --count {result.codes_short})",
            highlight=False, soft_wrap=True, markup=True)
    table = Table(title=f"Preview of {result.rule} (nothing was changed)", show_header=False)
    rows = [("matched trigger and segment", result.matched),
            *[(f"would receive on {ch}", n) for ch, n in sorted(result.by_channel.items())],
            ("  of which deferred by quiet hours", result.deferred),
            *[(f"  of which A/B variant {v}", n) for v, n in sorted(result.by_variant.items())],
            (f"held out (control group, {result.assignment} groups)", result.held_out),
            ("no consent / no address / suppressed", result.no_consent),
            ("turned off by the customer (topic or pause)", result.turned_off),
            ("in cooldown", result.cooldown),
            ("over the frequency cap", result.capped),
            ("already planned for this occurrence", result.already_planned)]
    if result.offer_pool is not None:
        rows.append((f"free codes in pool {result.offer_pool}", result.free_codes))
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    if result.sample:
        sample = Table(title="Sample of recipients")
        for col in ("customer", "name", "channel", "address", "not before (UTC)"):
            sample.add_column(col)
        for r in result.sample:
            sample.add_row(r["customer"], r["name"], r["channel"], r["address"] or "",
                           f"{r['not_before']:%Y-%m-%d %H:%M}" if r["not_before"] else "now")
        console.print(sample)


@rules.command("explain")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--customer", required=True, help="The customer's external id.")
@NOW_OPTION
@FORMAT_OPTION
@click.pass_context
@friendly
def rules_explain(ctx: click.Context, rule_file: Path, customer: str, now: str | None, fmt: str) -> None:
    """For one customer: each condition with its value, and whether and why
    they would receive RULE's message. Changes nothing.

    \b
    Example:
      outreach rules explain rules/winback.yaml --customer C000123
    """
    from rich.markup import escape
    from rich.tree import Tree

    from outreach.planning.explain import explain
    from outreach.rules import load_rule

    settings = app_settings(ctx)
    result = explain(open_engine(settings), load_rule(rule_file), customer=customer, now=now_option(now)[0],
                     ruleset=ruleset_for(rule_file))
    if fmt == "json":
        emit_json(result)
        return

    def mark(ok: bool) -> str:
        return "[green]✔ true[/]" if ok else "[red]✘ false[/]"

    def add(node: Any, check: Any) -> None:
        value = "" if check.value is None else f"  [dim]value: {escape(str(check.value))}[/]"
        child = node.add(f"{mark(check.passed)}  {escape(check.label)}{value}")
        for kid in check.children:
            add(child, kid)

    tree = Tree(f"[bold]{escape(result.rule)}[/] for customer [bold]{escape(result.customer)}[/]")
    add(tree, result.trigger)
    if result.segment:
        add(tree.add("segment"), result.segment)
    channels = tree.add("channels (in order of preference)")
    for check in result.channels:
        add(channels, check)
    policy = tree.add("policy")
    for check in result.policy:
        add(policy, check)
    console.print(tree)
    colour = "green" if result.would_send else "yellow"
    console.print(f"[bold {colour}]decision[/]: {escape(result.decision)}")


def _summary(spec: Any) -> dict[str, Any]:
    """What ``rules list`` and ``rules show`` say about a rule."""
    return {"name": spec.name, "description": spec.description, "enabled": spec.enabled,
            "trigger": spec.trigger.type, "channels": [c.value for c in spec.channels],
            "topic": spec.topic.value if spec.topic else None, "transactional": spec.transactional,
            "schedule": spec.schedule, "template": spec.template}


@rules.command("list")
@FORMAT_OPTION
@click.pass_context
@friendly
def rules_list(ctx: click.Context, fmt: str) -> None:
    """The rules in the rules folder: trigger, channels, topic, schedule.

    A customer who turns a topic off on their preference page gets no
    message of the rules of that topic; transactional rules have none.

    \b
    Example:
      outreach rules list
      outreach rules list --format json | jq -r '.[] | select(.topic == "offers") | .name'
    """
    from rich.table import Table

    from outreach.rules import load_rules

    settings = app_settings(ctx)
    found = [_summary(rule.spec) for rule in load_rules(settings.rules_dir)]
    if fmt == "json":
        emit_json(found)
        return
    table = Table(title=f"Rules in {settings.rules_dir}")
    for col in ("rule", "trigger", "channels", "topic", "schedule", "enabled"):
        table.add_column(col)
    for r in found:
        table.add_row(r["name"], r["trigger"], ", ".join(r["channels"]),
                      "transactional" if r["transactional"] else (r["topic"] or "-"), r["schedule"] or "-",
                      "yes" if r["enabled"] else "no")
    console.print(table)


def _campaign_state(settings: Any, name: str) -> dict[str, Any]:
    """What the database holds about a rule: how its groups are drawn and how
    its A/B test ended (nothing when the embedded database does not exist yet)."""
    from sqlalchemy import select

    from outreach.store import holdout, variants
    from outreach.store.engine import transaction
    from outreach.store.models import Rule

    if settings.embedded and not Path(settings.database_url.removeprefix("sqlite:///")).exists():
        return {"assignment": holdout.HASHED, "decision": None}
    with transaction(open_engine(settings)) as session:
        rule_id = session.scalar(select(Rule.id).where(Rule.name == name))
        decision = variants.decision_of(session, rule_id)
        return {"assignment": holdout.scheme_of(session, name), "decision": None if decision is None else {
            "winner": decision.winner, "decided_at": decision.decided_at, "reason": decision.reason}}


@rules.command("show")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@FORMAT_OPTION
@click.pass_context
@friendly
def rules_show(ctx: click.Context, rule_file: Path, fmt: str) -> None:
    """One rule as Outreach reads it, with every default filled in, and what
    the database says of it: how its control group is drawn and, for an A/B
    test, the winner (when and why) once one is decided.

    \b
    Example:
      outreach rules show rules/winback.yaml
      outreach rules show rules/winback.yaml --format json | jq .topic
    """
    import json

    from outreach.rules import load_rule

    spec = load_rule(rule_file).spec
    definition = json.loads(spec.model_dump_json(by_alias=True, exclude_none=True))
    state = _campaign_state(app_settings(ctx), spec.name)
    if fmt == "json":
        emit_json({**definition, "campaign": state})
        return
    summary = _summary(spec)
    console.print(f"[bold]{spec.name}[/]: {spec.description}", highlight=False)
    console.print(f"topic: {'transactional (no topic)' if spec.transactional else summary['topic'] or 'none'}",
                  highlight=False)
    for key, value in definition.items():
        if key not in ("name", "description", "topic"):
            console.print(f"{key}: {json.dumps(value, ensure_ascii=False)}", highlight=False, markup=False)
    console.print(f"groups: {state['assignment']}" + (" (legacy: overlaps other rules' control groups; "
                  f"`outreach campaign regroup {spec.name}` between experiments)"
                  if state["assignment"] == "legacy" else " (independent of every other rule's)"),
                  highlight=False, markup=False)
    decision = state["decision"]
    if spec.variants:
        verdict = "not decided yet" if decision is None else (
            f"{decision['winner'] or 'none'} (decided {decision['decided_at']:%Y-%m-%d %H:%M} UTC): "
            f"{decision['reason']}")
        console.print(f"winner: {verdict}", highlight=False, markup=False)


@rules.command("schema")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("docs"),
              show_default=True)
@friendly
def rules_schema(output_dir: Path) -> None:
    """Write the JSON Schemas of rule, policy and segments files (for editors).

    Add `# yaml-language-server: $schema=../docs/rule.schema.json` at the top of
    a rule file and editors autocomplete fields and flag mistakes as you type.

    \b
    Example:
      outreach rules schema --output-dir docs
    """
    from outreach.rules.jsonschema import SCHEMAS, render

    output_dir.mkdir(parents=True, exist_ok=True)
    for kind in SCHEMAS:
        path = output_dir / f"{kind}.schema.json"
        path.write_text(render(kind), encoding="utf-8")
        console.print(f"wrote {path}")


COMMANDS = (rules,)

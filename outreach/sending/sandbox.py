"""The Jinja sandbox templates run in, with bounds on what one render may cost.

Jinja's sandbox stops templates from reaching Python internals, but not from
asking for a billion characters (``'x' * 10**9``), a number of a billion
digits (``9 ** 9 ** 9``) or ten billion loop steps (two nested
``range(100000)``). :class:`BoundedSandbox` refuses each before it is paid
for, and :func:`render_bounded` stops a render whose output passes
``MAX_OUTPUT`` characters. A refusal is a ``SecurityError`` with what was
asked, which the renderer reports as a template error at its file and line
(``rules validate`` renders every template against a sample customer, so it
is found before a campaign, not at send time).
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Callable
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

#: Characters one template may produce (an email is a few tens of KB).
MAX_OUTPUT = 1_000_000
#: range() steps one render may take, all loops together.
MAX_LOOP_STEPS = 100_000
#: Digits a number computed with ** may have.
MAX_DIGITS = 10_000

#: What a template error's hint says: the sandbox's bounds, the variables there are.
BOUNDS_HINT = (f"templates run in a sandbox: no Python internals, at most {MAX_OUTPUT:,} characters "
               f"of output, {MAX_LOOP_STEPS:,} loop steps and numbers of {MAX_DIGITS:,} digits")
VARIABLES_HINT = ("variables available: customer.*, rule.*, message.id, unsubscribe_url, preferences_url "
                  "(and event.* in a rule triggered by an event, offer.* in a rule with an offer)")

_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("outreach_loop_budget", default=None)


def _bounded_range(*args: int) -> range:
    steps = range(*args)
    budget = _budget.get()
    if budget is not None:
        budget[0] -= len(steps)
        if budget[0] < 0:
            raise SecurityError(f"the loops take more than {MAX_LOOP_STEPS:,} steps in all")
    elif len(steps) > MAX_LOOP_STEPS:
        raise SecurityError(f"range of {len(steps):,} steps (at most {MAX_LOOP_STEPS:,})")
    return steps


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT


def _checked(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context / pass_environment marks
    def checked(*args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args[1:], *kwargs.values())):
            raise SecurityError(f"filter '{name}' with an argument larger than {MAX_OUTPUT:,}")
        return function(*args, **kwargs)

    return checked


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        # Compiled templates call filters directly, not through call(): each
        # is wrapped (``center(10**9)`` would build a gigabyte first).
        self.filters = {name: _checked(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(left) > 1 and right > 0 and right * math.log10(abs(left)) > MAX_DIGITS:
                raise SecurityError(f"{left} ** {right} has more than {MAX_DIGITS:,} digits")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"repeating {len(seq):,} items {times:,} times is more than "
                                        f"{MAX_OUTPUT:,}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if any(_too_big(a) for a in (*args, *kwargs.values())):
            raise SecurityError(f"an argument larger than {MAX_OUTPUT:,} (a width or a count this big "
                                "cannot be meant)")
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(template: Template, context: dict[str, Any]) -> str:
    """Render with a fresh loop budget, stopping once the output is too long."""
    token = _budget.set([MAX_LOOP_STEPS])
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the output is longer than {MAX_OUTPUT:,} characters")
            out.append(chunk)
        return "".join(out)
    finally:
        _budget.reset(token)

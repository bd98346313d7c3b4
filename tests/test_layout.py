"""The shape of the package, as the developers' brief asks for it: small
modules, each saying what it is for. (Import cycles and layering are checked
by import-linter, part of the README's test command.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "outreach"
#: A module longer than this is usually two ideas (STYLE.md).
MAX_MODULE_LINES = 400
#: Alembic revisions are history: written once, never edited.
EXEMPT = ("store/migrations/versions",)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not any(str(p.relative_to(PACKAGE)).startswith(e) for e in EXEMPT))


def test_no_module_is_longer_than_the_limit() -> None:
    too_long = {str(p.relative_to(PACKAGE)): n for p in modules()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert too_long == {}


def test_every_module_says_what_it_is_for() -> None:
    silent = [str(p.relative_to(PACKAGE)) for p in modules()
              if p.name != "env.py" and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert silent == []

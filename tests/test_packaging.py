"""The package as a user gets it: a wheel built from this tree carries the
example rules and templates, installs one ``outreach`` command and no stray
top-level module, and runs ``outreach init`` and ``outreach demo`` with no
source checkout in sight."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("outreach-*.whl")
    return built


def test_the_wheel_carries_the_examples_and_migrations_and_nothing_else_at_the_top(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"outreach/examples/rules/winback.yaml", "outreach/examples/rules/policy.yaml",
            "outreach/examples/templates/winback/email.mjml", "outreach/examples/templates/_layout/base.mjml",
            "outreach/store/migrations/script.py.mako", "outreach/store/migrations/env.py",
            "outreach/reporting/templates/report.html.j2"} <= names
    assert any(n.startswith("outreach/store/migrations/versions/0009_") for n in names)
    # No generic top-level cli.py (or tests, bench…) is installed into site-packages
    assert {n.split("/")[0] for n in names} == {"outreach", "outreach-0.1.0.dist-info"}


def test_the_wheel_declares_what_the_code_needs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = Parser().parsestr(archive.read("outreach-0.1.0.dist-info/METADATA").decode())
        entry_points = archive.read("outreach-0.1.0.dist-info/entry_points.txt").decode()
    requires = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    core = {r.name: r for r in requires if r.marker is None}
    assert core["sqlalchemy"].specifier.contains("2.1.0") and not core["sqlalchemy"].specifier.contains("2.0.40")
    assert "tzdata" in core and "structlog" in core
    # Faker only for the demo, as an extra
    assert "faker" not in core
    assert any(r.name == "faker" and r.marker and r.marker.evaluate({"extra": "demo"}) for r in requires)
    assert "outreach = outreach.cli:main" in entry_points


def test_an_installed_wheel_runs_init_and_the_demo_anywhere(wheel: Path, tmp_path: Path) -> None:
    # Given the wheel installed on its own (dependencies from this environment)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["PYTHONPATH"] = str(site)
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([sys.executable, "-c", "import outreach; print(outreach.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(site / "outreach" / "__init__.py")
    outreach = site / "bin" / "outreach"

    # When a new user starts a project and runs the demo in it
    init = subprocess.run([str(outreach), "init", "demo-shop"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    shop = work / "demo-shop"
    demo = subprocess.run([str(outreach), "demo", "--customers", "300"], cwd=shop, env=env,
                          capture_output=True, text=True, timeout=300)

    # Then it ran end to end on the project's own (shipped) rules
    assert demo.returncode == 0, demo.stderr
    assert "Incremental results" in demo.stdout and "shipped example rules" not in demo.stdout
    assert (shop / "rules" / "currency.yaml").is_file()  # the report's rates, for the shop to edit
    assert (shop / "rules" / "winback.yaml").read_text().replace("../schemas/", "../docs/") == (
        REPO / "rules" / "winback.yaml").read_text()
    assert list((shop / "demo" / "outbox" / "email").glob("*.eml"))

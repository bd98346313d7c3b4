"""The command line, as a marketer uses it: located errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTREACH = Path(sys.executable).parent / "outreach"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    full_env["OUTREACH_CONFIG"] = str(cwd / "outreach.toml")
    full_env.update(env or {})
    return subprocess.run([str(OUTREACH), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    os.symlink(REPO / "templates", tmp_path / "templates")
    return tmp_path


def test_every_command_has_help_with_an_example(workdir: Path) -> None:
    for command in (["--help"], ["import", "--help"], ["rules", "validate", "--help"],
                    ["campaign", "launch", "--help"], ["run", "--help"], ["worker", "--help"],
                    ["serve", "--help"], ["report", "--help"], ["demo", "--help"], ["db", "upgrade", "--help"]):
        result = run(*command, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout, command


def test_validate_reports_every_problem_with_location(workdir: Path) -> None:
    (workdir / "rules" / "bad.yaml").write_text(
        "name: promo\n"
        "trigger:\n"
        "  type: inactivity\n"
        "  days: 30\n"
        "template: winback\n"
        "channels: [email, fax]\n"
        "cooldwn_days: 3\n"
    )
    result = run("rules", "validate", cwd=workdir)
    assert result.returncode == 1
    assert "rules/bad.yaml, line 6, column 19" in result.stderr
    assert "line 7, column 1: unknown field 'cooldwn_days' (hint: did you mean 'cooldown_days'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_checks_the_templates_a_rule_names(workdir: Path) -> None:
    (workdir / "rules" / "r.yaml").write_text(
        "name: promo\ntrigger: {type: birthday}\ntemplate: no-such-template\nchannels: [sms]\n"
    )
    result = run("rules", "validate", cwd=workdir)
    assert result.returncode == 1
    assert "template 'no-such-template' not found" in result.stderr


def test_a_missing_rules_folder_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    # Run outside the project folder, without OUTREACH_RULES_DIR
    result = run("rules", "validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "rule file not found" in result.stderr
    assert str(tmp_path) in result.stderr and "OUTREACH_RULES_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_shipped_rules_are_valid() -> None:
    result = run("rules", "validate", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "4 rule(s) valid" in result.stdout


def test_bad_now_is_a_located_error(workdir: Path) -> None:
    result = run("run", "--now", "yesterday", cwd=workdir)
    assert result.returncode == 1
    assert "--now" in result.stderr and "ISO 8601" in result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("demo") / "demo"
    result = run("demo", "--customers", "400", "--dir", str(folder), cwd=REPO)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


def test_demo_runs_end_to_end_and_prints_the_roi_report(demo: tuple[Path, str]) -> None:
    import email
    import email.policy

    folder, out = demo
    assert "SIMULATED responses" in out and "Campaign ROI" in out
    for rule in ("winback", "birthday", "upsell-teaware"):
        assert rule in out.split("4. ROI report")[1]
    emls = list((folder / "outbox" / "email").glob("*.eml"))
    assert emls, "the demo delivered no email"
    parsed = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert parsed["List-Unsubscribe"] and parsed.get_body(("html",)) is not None


def test_preview_and_explain_on_the_demo_shop(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    db = ["--database-url", f"sqlite:///{folder / 'outreach.db'}"]
    preview = run(*db, "rules", "preview", "rules/winback.yaml", cwd=REPO)
    assert preview.returncode == 0, preview.stderr
    assert "nothing was changed" in preview.stdout and "already planned for this occurrence" in preview.stdout
    explain = run(*db, "rules", "explain", "rules/winback.yaml", "--customer", "C000001", cwd=REPO)
    assert explain.returncode == 0, explain.stderr
    assert "trigger inactivity" in explain.stdout and "decision:" in explain.stdout
    missing = run(*db, "rules", "explain", "rules/winback.yaml", "--customer", "NOPE", cwd=REPO)
    assert missing.returncode == 1 and "no customer with external id 'NOPE'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unknown_named_segment_is_located_in_every_command(workdir: Path) -> None:
    # Given a rule that names a segment rules/segments.yaml does not define
    (workdir / "rules" / "segments.yaml").write_text("segments:\n  vip: {stats: {value_tier: vip}}\n")
    (workdir / "rules" / "r.yaml").write_text(
        "name: promo\ntrigger: {type: birthday}\nsegment:\n  segment: vipz\ntemplate: winback\nchannels: [sms]\n"
    )
    assert run("db", "upgrade", cwd=workdir).returncode == 0
    # Then validate, preview, explain and launch all name the file and line, and change nothing
    for command in (["rules", "validate"], ["rules", "preview", "rules/r.yaml"],
                    ["rules", "explain", "rules/r.yaml", "--customer", "C1"],
                    ["campaign", "launch", "rules/r.yaml"], ["run"]):
        result = run(*command, cwd=workdir)
        assert result.returncode == 1, command
        assert "rules/r.yaml, line 4: unknown segment 'vipz'" in result.stderr, (command, result.stderr)
        assert "known: vip" in result.stderr and "Traceback" not in result.stderr
    assert run("report", cwd=workdir).returncode == 0

"""The command line, as a marketer uses it: located errors, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTREACH = Path(sys.executable).parent / "outreach"
IMPORT = REPO / "tests" / "fixtures" / "import"


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
                    ["serve", "--help"], ["report", "--help"], ["demo", "--help"], ["db", "upgrade", "--help"],
                    ["campaign", "regroup", "--help"]):
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
    assert "5 rule(s) valid" in result.stdout


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
    assert "SIMULATED responses" in out and "Incremental results" in out
    assert "simulated" in out.split("4. ROI report")[1]  # the report says it counts simulated rows
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


# ---------------------------------------------------------------- exit codes
def test_exit_codes_say_what_kind_of_error_it_was(workdir: Path) -> None:
    # A wrong command line is click's usage error: 2
    assert run("report", "--colour", cwd=workdir).returncode == 2
    # A bad rule is a data error: 1
    (workdir / "rules" / "r.yaml").write_text("name: promo\ntrigger: {type: birthday}\n")
    assert run("rules", "validate", "--no-db", cwd=workdir).returncode == 1
    # A setting naming no registered channel backend is a configuration error: 3
    bad = run("run", cwd=workdir, env={"OUTREACH_EMAIL_TRANSPORT": "pigeon"})
    assert bad.returncode == 3
    assert "OUTREACH_EMAIL_TRANSPORT 'pigeon' is not one of the email transports" in bad.stderr


def test_an_unreachable_database_is_one_line_with_a_hint_and_no_password(workdir: Path) -> None:
    # Given PostgreSQL configured on a port where nothing listens, with a password in the URL
    url = "postgresql+psycopg://shop:hunter2@127.0.0.1:9/outreach"
    for command in (["report"], ["rules", "validate"], ["run"], ["import", "customers", str(IMPORT / "customers.csv")]):
        result = run("--database-url", url, *command, cwd=workdir)
        # Then each command says so in one line, with a hint, exit code 3, the password masked
        assert result.returncode == 3, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot use the database "), (command, lines)
        assert "shop:***@127.0.0.1:9/outreach" in lines[0] and "hint:" in lines[0]
        assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_an_unreachable_broker_is_a_service_error(workdir: Path) -> None:
    (workdir / "rules" / "hello.yaml").write_text(
        "name: hello\ntrigger: {type: birthday}\ntemplate: winback\nchannels: [email]\n")
    result = run("--broker-url", "redis://127.0.0.1:9/0", "campaign", "launch", "rules/hello.yaml", cwd=workdir)
    assert result.returncode == 3, result.stderr
    assert "cannot reach the broker redis://127.0.0.1:9/0" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- scripting
def test_every_read_command_speaks_json(demo: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = demo
    db = ["--database-url", f"sqlite:///{folder / 'outreach.db'}"]

    def as_json(*args: str) -> object:
        result = run(*db, *args, "--format", "json", cwd=REPO)
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout)

    validated = as_json("rules", "validate")
    assert validated["ok"] is True and validated["rules"] == 5 and validated["errors"] == []
    preview = as_json("rules", "preview", "rules/winback.yaml")
    assert preview["rule"] == "winback" and preview["would_send"] == sum(preview["by_channel"].values())
    assert all(isinstance(preview[k], int) for k in ("matched", "held_out", "no_consent", "already_planned"))
    explained = as_json("rules", "explain", "rules/winback.yaml", "--customer", "C000001")
    assert explained["customer"] == "C000001" and explained["trigger"]["label"] == "trigger inactivity"
    assert isinstance(explained["would_send"], bool) and explained["decision"]
    launched = as_json("campaign", "launch", "rules/winback.yaml", "--now", "2027-01-01T02:00:00Z")
    assert [r["rule"] for r in launched] == ["winback"]
    assert {"planned", "held_out", "queued", "run_id"} <= set(launched[0])
    ran = as_json("run", "--now", "2027-01-01T02:00:00Z")
    assert isinstance(ran, list)
    assert {r["rule"] for r in ran} <= {"winback", "birthday", "upsell-teaware", "vip-lapsing", "cart-abandoned"}
    report = as_json("report")
    assert report["version"] == 1
    assert {r["rule"] for r in report["rules"]} >= {"winback", "birthday"}
    assert all("incremental_roi" in r["lift"] for r in report["rules"])
    imported = as_json("import", "customers", str(IMPORT / "customers.csv"))
    assert imported["kind"] == "customers" and imported["rows"] == 3


def test_validate_in_json_lists_every_problem_with_its_location(workdir: Path) -> None:
    (workdir / "rules" / "bad.yaml").write_text(
        "name: promo\ntrigger:\n  type: inactivity\n  days: 30\ntemplate: winback\nchannels: [email, fax]\n")
    result = run("rules", "validate", "--format", "json", cwd=workdir)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [problem] = report["errors"]
    assert (problem["file"], problem["line"], problem["column"]) == ("rules/bad.yaml", 6, 19)


def test_import_reads_standard_input(workdir: Path) -> None:
    # Given a CSV piped in, one good row and one with a bad e-mail
    csv_text = ("external_id,name,email\n"
                "S1,Ada Lovelace,ada@example.com\n"
                "S2,Bad Row,not-an-address\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["OUTREACH_CONFIG"] = str(workdir / "outreach.toml")

    def pipe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OUTREACH), "import", "customers", "-", *args], cwd=workdir, env=env,
                              input=csv_text, capture_output=True, text=True, timeout=120)

    # When imported strictly, the bad row is located in <stdin> and nothing is committed
    strict = pipe()
    assert strict.returncode == 1
    assert "<stdin>, row 3, field 'email'" in strict.stderr
    # When imported with --skip-invalid, the good row is in and the bad one in the reject file
    lenient = pipe("--skip-invalid")
    assert lenient.returncode == 0, lenient.stderr
    assert "customers: 2 rows, 1 inserted, 0 updated, 1 rejected" in lenient.stdout
    assert "not-an-address" in (workdir / "customers.rejects.csv").read_text(encoding="utf-8-sig")


# ---------------------------------------------------------------- a new project
def test_init_writes_a_starter_project_that_validates_and_refuses_to_overwrite(tmp_path: Path) -> None:
    # When a marketer starts a project in an empty folder
    result = run("init", "shop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shop = tmp_path / "shop"
    # Then it has rules with their policy and segments, templates, editor schemas and a config
    assert {p.name for p in (shop / "rules").iterdir()} >= {"winback.yaml", "policy.yaml", "segments.yaml"}
    assert (shop / "templates" / "winback" / "email.mjml").is_file()
    assert (shop / "outreach.toml").is_file()
    assert "$schema=../schemas/rule.schema.json" in (shop / "rules" / "winback.yaml").read_text()
    assert json.loads((shop / "schemas" / "rule.schema.json").read_text())["title"] == "Outreach rule"
    # And its rules are valid as written
    validated = run("rules", "validate", "--no-db", cwd=shop)
    assert validated.returncode == 0 and "5 rule(s) valid" in validated.stdout
    # And a second init changes nothing unless forced
    (shop / "rules" / "winback.yaml").write_text("# my edits\n")
    again = run("init", "shop", cwd=tmp_path)
    assert again.returncode == 1 and "already has" in again.stderr and "--force" in again.stderr
    assert (shop / "rules" / "winback.yaml").read_text() == "# my edits\n"
    assert run("init", "shop", "--force", cwd=tmp_path).returncode == 0
    assert "name: winback" in (shop / "rules" / "winback.yaml").read_text()


def test_demo_runs_from_a_folder_without_rules_on_the_shipped_examples(tmp_path: Path) -> None:
    result = run("demo", "--customers", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "using the shipped example rules" in result.stdout
    assert "winback" in result.stdout.split("4. ROI report")[1]
    assert list((tmp_path / "demo" / "outbox" / "email").glob("*.eml"))


def test_json_logs_of_a_launch_name_rule_run_and_message(workdir: Path) -> None:
    # Given one customer with consent who is having a birthday
    (workdir / "rules" / "hello.yaml").write_text(
        "name: hello\ntrigger: {type: birthday}\ntemplate: birthday\nchannels: [email]\n")
    customers = workdir / "customers.csv"
    customers.write_text("external_id,name,email,birthday,timezone\nB1,Ada,ada@example.com,1990-06-01,UTC\n")
    consents = workdir / "consents.csv"
    consents.write_text("customer_id,channel,status,source,recorded_at\nB1,email,granted,checkout,2026-01-01\n")
    assert run("import", "customers", str(customers), cwd=workdir).returncode == 0
    assert run("import", "consents", str(consents), "--now", "2026-06-01T09:00:00Z", cwd=workdir).returncode == 0
    # When the rule is launched with JSON logs at info
    result = run("--log-level", "info", "--log-format", "json", "campaign", "launch", "rules/hello.yaml",
                 "--now", "2026-06-01T09:00:00Z", cwd=workdir)
    assert result.returncode == 0, result.stderr
    # Then every line of the log is a JSON record, and they say which rule, run and message
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    [planned] = [r for r in logged if r["event"] == "rule planned"]
    [sent] = [r for r in logged if r["event"] == "message sent"]
    assert planned["rule"] == sent["rule"] == "hello" and planned["run_id"] == sent["run_id"]
    assert isinstance(sent["message_id"], int)


def test_the_demo_without_faker_says_how_to_install_it(tmp_path: Path) -> None:
    # Faker is the `demo` extra, not a core dependency: without it only the demo stops, with the fix
    script = "import sys; sys.modules['faker'] = None; from outreach.cli import main; main(['demo'])"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 3
    assert "pip install 'outreach[demo]'" in result.stderr and "Traceback" not in result.stderr


def test_rules_list_and_show_name_each_rules_topic() -> None:
    listed = run("rules", "list", "--format", "json", cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    topics = {r["name"]: r["topic"] for r in json.loads(listed.stdout)}
    assert topics == {"winback": "offers", "upsell-teaware": "offers", "cart-abandoned": "offers",
                      "birthday": "care", "vip-lapsing": "care"}
    table = run("rules", "list", cwd=REPO)
    assert table.returncode == 0 and re.search(r"winback\s.*\boffers\b", table.stdout), table.stdout
    shown = run("rules", "show", "rules/birthday.yaml", cwd=REPO)
    assert shown.returncode == 0 and "topic: care" in shown.stdout
    assert json.loads(run("rules", "show", "rules/winback.yaml", "--format", "json", cwd=REPO).stdout)[
        "topic"] == "offers"
    for command in ("list", "show"):
        assert "Example" in run("rules", command, "--help", cwd=REPO).stdout

"""A project folder: the shipped examples, ``outreach init``, and where the
demo finds rules and templates.

The example rules and templates are shipped inside the package (the wheel
carries the top-level ``rules/`` and ``templates/`` as
``outreach/examples/``); in a source checkout they are read from the
top-level folders themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outreach.errors import ConfigError, InputError
from outreach.rules.jsonschema import SCHEMAS, render

PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a wheel carries the examples, and where a source checkout has them.
_CANDIDATES = (PACKAGE_DIR / "examples", PACKAGE_DIR.parent)
#: The folders ``outreach init`` writes, and the schema folder it adds.
EXAMPLE_FOLDERS = ("rules", "templates")
SCHEMA_FOLDER = "schemas"
CONFIG_FILE = "outreach.toml"
#: How the shipped rules point editors at their schema (relative to rules/).
SHIPPED_SCHEMA_REF = "$schema=../docs/"
INIT_SCHEMA_REF = f"$schema=../{SCHEMA_FOLDER}/"

STARTER_CONFIG = """\
# Outreach configuration. Precedence: command-line options, then OUTREACH_*
# environment variables, then this file, then the defaults shown here.
# Every setting is described in the README ("Configuration").

# Embedded (no services): a SQLite file, an in-process broker, a file outbox.
database_url = "sqlite:///outreach.db"
broker_url = "memory://"
outbox_dir = "outbox"
rules_dir = "rules"
templates_dir = "templates"
# report_currency = "CNY"    # the ROI report's currency; rates in rules/currency.yaml

# Production:
# database_url = "postgresql+psycopg://outreach@db.internal/outreach"
# broker_url = "redis://redis.internal:6379/0"
# public_url = "https://t.shop.example"     # where customers reach `outreach serve`
# secret_key = "a long random string"       # signs unsubscribe and click links
# email_transport = "smtp"
# smtp_host = "smtp.shop.example"
# smtp_port = 587
# smtp_starttls = true
# from_address = "Shop <hello@shop.example>"
# sms_transport = "twilio"
# twilio_account_sid = "AC…"
# twilio_from = "+1…"
# SMS in mainland China (approved templates only: docs/sms-providers.md), pip install "outreach[aliyun]":
# sms_transport = "aliyun"
# aliyun_access_key_id = "LTAI…"
# aliyun_sign_name = "翠叶茶庄"
"""


def shipped(folder: str) -> Path:
    """The shipped example ``rules`` or ``templates`` folder."""
    for root in _CANDIDATES:
        path = root / folder
        if path.is_dir():
            return path
    raise ConfigError(
        f"the shipped example {folder} are missing from this installation ({PACKAGE_DIR}): "
        "reinstall outreach"
    )


@dataclass(frozen=True)
class Folders:
    """Where rules and templates are read from, and whether they are the shipped examples."""

    rules: Path
    templates: Path
    shipped: bool


def demo_folders(rules_dir: Path, templates_dir: Path) -> Folders:
    """The project's rules and templates when the working folder has rules,
    else the shipped examples (so ``outreach demo`` runs from anywhere)."""
    if Path(rules_dir).is_dir():
        return Folders(Path(rules_dir), Path(templates_dir), shipped=False)
    return Folders(shipped("rules"), shipped("templates"), shipped=True)


def init_project(target: Path, *, force: bool = False) -> list[Path]:
    """Write a starter project into ``target``: the example rules (with the
    policy and named segments), templates, the JSON Schemas editors use and
    an ``outreach.toml``. Refuses to overwrite a file unless ``force``.
    Returns the files written."""
    target = Path(target)
    plan: dict[Path, bytes] = {}
    for folder in EXAMPLE_FOLDERS:
        source = shipped(folder)
        for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            data = path.read_bytes()
            if folder == "rules" and path.suffix in (".yaml", ".yml"):
                data = data.replace(SHIPPED_SCHEMA_REF.encode(), INIT_SCHEMA_REF.encode())
            plan[target / folder / path.relative_to(source)] = data
    for kind in SCHEMAS:
        plan[target / SCHEMA_FOLDER / f"{kind}.schema.json"] = render(kind).encode()
    plan[target / CONFIG_FILE] = STARTER_CONFIG.encode()
    existing = [path for path in plan if path.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3])
        if len(existing) > 3:
            shown += f" and {len(existing) - 3} more"
        raise InputError.single(
            f"{target} already has {shown}", field="DIR",
            hint="choose a new or empty folder, or pass --force to overwrite the starter files",
        )
    if target.exists() and not target.is_dir():
        raise InputError.single(f"{target} is a file, not a folder", field="DIR", hint="choose a folder name")
    for path, data in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(plan)

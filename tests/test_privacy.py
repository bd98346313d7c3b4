"""The rights of access and erasure, through the real command line on SQLite
and PostgreSQL: ``outreach customers export`` and ``outreach customers erase``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from outreach.domain import Channel
from outreach.store import confirmations, preferences
from outreach.store.engine import transaction
from outreach.store.erased import ErasedAddress, Erasure
from outreach.store.models import Base, ConsentRecord, Customer, Message, Order, OrderTotals, PreferenceRecord
from outreach.store.order_writes import IncomingOrder, OrderLine
from outreach.store.responses import record_order, stop_sms

REPO = Path(__file__).resolve().parents[1]
OUTREACH = Path(sys.executable).parent / "outreach"
NOW = "2026-06-01T09:00:00Z"
NEXT_YEAR = "2027-06-01T09:00:00Z"
# The person who asks to be erased, and what must not survive the erasure.
EMAIL, PHONE, NAME = "ada.quill@example.com", "+8613811112222", "Ada Quill"
FIRST_NAME = NAME.split()[0]
PERSONAL = (EMAIL, PHONE, NAME, "Quill", "Hangzhou", "203.0.113.7")
CUSTOMERS = ("external_id,name,email,phone,birthday,timezone,tags,city\n"
             f"B1,{NAME},{EMAIL},{PHONE},1990-06-01,Asia/Shanghai,vip;newsletter,Hangzhou\n"
             "B2,Bo Lind,bo@example.com,+8613833334444,1985-01-20,UTC,,Oslo\n")
CONSENTS = ("customer_id,channel,status,source,evidence,recorded_at\n"
            f"B1,email,granted,checkout,ticked 'email me' at checkout as {EMAIL} from 203.0.113.7,2026-01-01\n"
            "B1,sms,granted,checkout,ticked 'text me',2026-01-01\n"
            "B2,email,granted,checkout,ticked 'email me',2026-01-01\n")
ORDERS = ("external_id,customer_id,ordered_at,amount,items\n"
          "O1,B1,2026-03-01T10:00:00Z,120.00,TEA-001|tea|2|120.00\n"
          "O2,B1,2026-04-01T10:00:00Z,30.50,CUP-01|teaware|1|30.50\n"
          "O3,B2,2026-04-02T10:00:00Z,10.00,\n")
EVENTS = ("external_id,customer_id,name,occurred_at,venue\n"
          f"E1,B1,tasting_attended,2026-03-10T15:00:00Z,{NAME}'s flat in Hangzhou\n")
RULE = "name: hello\ntrigger: {type: birthday}\ntemplate: birthday\nchannels: [email]\n"

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    """``outreach`` run in a project folder of its own, on the test's database."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hello.yaml").write_text(RULE)
    os.symlink(REPO / "templates", tmp_path / "templates")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_CONFIG=str(tmp_path / "outreach.toml"), OUTREACH_DATABASE_URL=db_url,
               OUTREACH_SECRET_KEY="test-secret-for-privacy", OUTREACH_OUTBOX_DIR=str(tmp_path / "outbox"))

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OUTREACH), *args], cwd=tmp_path, env=env, input=stdin, capture_output=True,
                              text=True, timeout=240)

    return run


def write(cli: Cli, kind: str, text: str, *extra: str) -> str:
    result = cli("import", kind, "-", *extra, stdin=text)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def shop(cli: Cli, engine: Engine) -> Cli:
    """B1 (the one who asks) and B2 with consents, orders, an event, a sent
    birthday email and an SMS STOP reply."""
    for kind, text in (("customers", CUSTOMERS), ("consents", CONSENTS), ("orders", ORDERS), ("events", EVENTS)):
        write(cli, kind, text, "--now", NOW)
    launched = cli("campaign", "launch", "rules/hello.yaml", "--now", NOW)
    assert launched.returncode == 0, launched.stderr
    with transaction(engine) as session:
        stop_sms(session, phone=PHONE, occurred_at=datetime(2026, 6, 2), source="twilio",
                 payload={"From": PHONE, "Body": "STOP", "MessageSid": "SM1"}, dedupe_key="twilio:SM1")
        # An order from the shop's webhook, its body kept beside the ORDER event
        order = IncomingOrder(external_id="O4", customer_external_id="B1", ordered_at=datetime(2026, 5, 1),
                              amount=Decimal("20.00"), currency="CNY", items=(OrderLine(sku="TEA-002"),))
        record_order(session, order, source="webhook", payload={
            "external_id": "O4", "customer_id": "B1", "amount": "20.00", "note": f"gift wrap, card to {NAME}"})
        # On their preference page: offers off and a break, and a link asked for to get email back
        b1 = session.scalars(select(Customer.id).where(Customer.external_id == "B1")).one()
        preferences.apply(session, preferences.PreferenceChange(
            customer_id=b1, topics={"offers": False}, pause_until=datetime(2026, 7, 2),
            evidence=f"on the preference page of {EMAIL}, from 203.0.113.7"), at=datetime(2026, 6, 2))
        confirmations.request(session, customer_id=b1, channel=Channel.EMAIL, address=EMAIL, message_id=None,
                              now=datetime(2026, 6, 2))
    return cli


def dump(engine: Engine) -> list[str]:
    """Every value of every column of every table, as text."""
    values: list[str] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                values += [json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
                           for v in row if v is not None]
    return values


def outbox_text(cli_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (cli_dir / "outbox").rglob("*") if p.is_file())


def test_export_holds_the_profile_consent_evidence_orders_messages_and_responses(shop: Cli, tmp_path: Path) -> None:
    # When the customer asks what is held about them
    result = shop("customers", "export", "B1")
    assert result.returncode == 0, result.stderr
    held = json.loads(result.stdout)
    # Then it is all there, in the documented shape
    assert held["schema_version"] == 1
    profile = held["customer"]
    assert (profile["external_id"], profile["name"], profile["email"], profile["phone"]) == ("B1", NAME, EMAIL, PHONE)
    assert profile["birthday"] == "1990-06-01" and profile["attributes"] == {"city": "Hangzhou"}
    assert profile["tags"] == ["newsletter", "vip"]
    ledger = held["consents"]["ledger"]
    assert any(r["channel"] == "email" and r["status"] == "granted" and "203.0.113.7" in r["evidence"]
               for r in ledger)
    assert any(r["channel"] == "sms" and r["status"] == "revoked" and "STOP" in r["evidence"] for r in ledger)
    assert {(c["channel"], c["status"]) for c in held["consents"]["current"]} == {("email", "granted"),
                                                                                  ("sms", "revoked")}
    assert [(s["channel"], s["address"]) for s in held["suppressions"]] == [("sms", PHONE)]
    assert [(o["external_id"], o["amount"], [i["sku"] for i in o["items"]]) for o in held["orders"]] == [
        ("O1", "120.00", ["TEA-001"]), ("O2", "30.50", ["CUP-01"]), ("O4", "20.00", ["TEA-002"])]
    assert [(e["name"], e["properties"]["venue"]) for e in held["events"]] == [
        ("tasting_attended", f"{NAME}'s flat in Hangzhou")]
    [message] = held["messages"]
    assert (message["rule"], message["channel"], message["status"], message["to_address"]) == (
        "hello", "email", "sent", EMAIL)
    assert message["subject"].startswith("Happy birthday, Ada") and message["sent_at"]
    assert {"order", "stop"} <= {t["type"] for t in held["tracking_events"]}
    assert any(t["payload"].get("From") == PHONE for t in held["tracking_events"])
    assert [t["payload"]["customer_id"] for t in held["tracking_events"] if t["order"] == "O4"] == ["B1"]
    assert "stats" in held and "memberships" in held and held["holdouts"] == []
    choices = held["preferences"]
    assert [t["topic"] for t in choices["topics_off"]] == ["offers"]
    assert choices["pause"]["paused_until"] == "2026-07-02T00:00:00"
    assert [(r["kind"], r["name"], r["value"]) for r in choices["ledger"]] == [
        ("topic", "offers", "off"), ("pause", "", "until 2026-07-02T00:00:00")]
    assert "203.0.113.7" in choices["ledger"][0]["evidence"]
    assert [(c["channel"], c["address"], c["confirmed_at"]) for c in choices["confirmations"]] == [
        ("email", EMAIL, None)]
    # And --output writes the same document to a file only its owner can read
    to_file = shop("customers", "export", "B1", "--output", str(tmp_path / "B1.json"), "--now", NOW)
    assert to_file.returncode == 0, to_file.stderr
    assert json.loads((tmp_path / "B1.json").read_text())["customer"] == profile
    assert stat.S_IMODE((tmp_path / "B1.json").stat().st_mode) == 0o600


def test_erase_removes_every_personal_value_and_keeps_the_books_and_the_opt_out(
        shop: Cli, engine: Engine, tmp_path: Path) -> None:
    assert any(EMAIL in v for v in dump(engine))  # the search below can find what it looks for
    # When the customer is erased
    result = shop("customers", "erase", "B1", "--yes")
    assert result.returncode == 0, result.stderr
    assert "erased" in result.stdout and "kept for the books: 3 order(s), revenue 170.50" in result.stdout
    # And the log has the audit line, without a personal value
    assert "customer erased" in result.stderr and not [p for p in PERSONAL if p in result.stderr]
    # Then no personal value is left in any column of any table
    values = dump(engine)
    for personal in PERSONAL:
        assert not [v for v in values if personal.lower() in v.lower()], personal
    assert not [v for v in values if re.search(rf"\b{FIRST_NAME}\b", v)]  # "Happy birthday, Ada!" went too
    # And the other customer is untouched
    assert any("Bo Lind" in v for v in values) and any("bo@example.com" in v for v in values)
    with engine.connect() as conn:
        erased_id = conn.scalar(select(Order.customer_id).where(Order.external_id == "O1"))
        # The books: the orders, their amounts and the customer's totals stay
        assert conn.scalar(select(func.sum(Order.amount)).where(Order.customer_id == erased_id)) == Decimal("170.50")
        assert conn.scalar(select(OrderTotals.revenue).where(OrderTotals.customer_id == erased_id)) == Decimal(
            "170.50")
        # The consent proof stays, anonymized, with the erasure's revocation
        ledger = conn.execute(select(ConsentRecord.channel, ConsentRecord.status, ConsentRecord.source,
                                     ConsentRecord.evidence).where(ConsentRecord.customer_id == erased_id)
                              .order_by(ConsentRecord.recorded_at, ConsentRecord.id)).all()
        assert ("email", "granted", "checkout", "ticked 'email me' at checkout as [erased] from [erased]") in [
            (c.value, s.value, src, ev) for c, s, src, ev in ledger]
        assert [(c.value, s.value) for c, s, src, _ in ledger if src == "erasure"] == [("email", "revoked")]
        # The opt-out is kept as hashes of both addresses; the audit line says what, not whose
        hashes = set(conn.execute(select(ErasedAddress.channel, ErasedAddress.address_hash)))
        assert {(c.value, h) for c, h in hashes} == {  # the formula docs/privacy.md gives
            (channel, hashlib.sha256(f"outreach:erased-address:v1:{channel}:{address}".encode()).hexdigest())
            for channel, address in (("email", EMAIL), ("sms", PHONE))}
        [summary] = conn.scalars(select(Erasure.summary)).all()
        assert summary["messages_anonymized"] == 1 and summary["orders_kept"] == 3
        # The choices on the preference page go; their evidence stays, scrubbed
        assert (summary["preferences_removed"], summary["preference_records_scrubbed"]) == (3, 2)
        assert conn.execute(select(PreferenceRecord.kind, PreferenceRecord.value, PreferenceRecord.evidence)
                            .order_by(PreferenceRecord.id)).all() == [
            ("topic", "off", "on the preference page of [erased], from [erased]"),
            ("pause", "until 2026-07-02T00:00:00", "on the preference page of [erased], from [erased]")]
    # And the id no longer finds anyone
    again = shop("customers", "export", "B1")
    assert again.returncode == 1 and "no customer with external id 'B1'" in again.stderr


def test_an_erased_person_imported_again_is_never_planned_or_sent(shop: Cli, engine: Engine, tmp_path: Path) -> None:
    # Given B1 erased
    assert shop("customers", "erase", "B1", "--yes").returncode == 0
    # When the shop exports the same person again under a new id (the address
    # written differently) and with a fresh consent
    imported = write(shop, "customers", "external_id,name,email,birthday\n"
                                        f"N1,{NAME}, Ada.Quill@Example.COM ,1990-06-01\n", "--now", NOW)
    assert "1 address(es) of erased customers suppressed" in imported
    write(shop, "consents", "customer_id,channel,status,source\nN1,email,granted,checkout\n", "--now", NEXT_YEAR)
    # And the birthday rule runs on their next birthday
    sent_before = outbox_text(tmp_path).count(EMAIL)
    launched = shop("campaign", "launch", "rules/hello.yaml", "--now", NEXT_YEAR)
    assert launched.returncode == 0, launched.stderr
    # Then nothing is planned for them, and nothing reaches their address
    with engine.connect() as conn:
        new_id = conn.scalar(select(Customer.id).where(Customer.external_id == "N1"))
        assert conn.scalar(select(func.count()).select_from(Message).where(Message.customer_id == new_id)) == 0
    assert outbox_text(tmp_path).count(EMAIL) == sent_before
    # And explain says why: the address is suppressed
    explained = shop("rules", "explain", "rules/hello.yaml", "--customer", "N1", "--now", NEXT_YEAR)
    assert "suppress" in explained.stdout.lower(), explained.stdout + explained.stderr


def test_a_dry_run_and_a_declined_confirmation_change_nothing(shop: Cli, engine: Engine) -> None:
    before = dump(engine)
    # When a dry run is asked for
    dry = shop("customers", "erase", "B1", "--dry-run")
    # Then it says what would go, and nothing has
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout and "messages: address and subject: 1" in dry.stdout
    assert dump(engine) == before
    # And without --yes it asks; answering no erases nothing
    declined = shop("customers", "erase", "B1", stdin="n\n")
    assert declined.returncode == 0, declined.stderr
    assert "Erase customer B1?" in declined.stderr and "nothing erased" in declined.stdout
    assert dump(engine) == before


def test_an_unknown_id_is_a_clear_error(cli: Cli) -> None:
    for command in ("export", "erase"):
        result = cli("customers", command, "NOPE", "--yes" if command == "erase" else "--now", *(
            [] if command == "erase" else [NOW]))
        assert result.returncode == 1
        assert "no customer with external id 'NOPE'" in result.stderr
        assert "hint: give the customer's external_id as imported" in result.stderr
        assert "Traceback" not in result.stderr


def test_every_customers_command_has_help_with_an_example(cli: Cli) -> None:
    for command in (["customers"], ["customers", "export"], ["customers", "erase"]):
        result = cli(*command, "--help")
        assert result.returncode == 0 and "Example" in result.stdout, command


def test_the_erasure_migration_downgrades_and_upgrades_again(engine: Engine) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from outreach.store.engine import alembic_config, migrate

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012-1")
    assert not {"erased_addresses", "erasures"} & set(inspect(engine).get_table_names())
    migrate(engine)
    assert {"erased_addresses", "erasures"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_another_customer_with_the_erased_address_is_suppressed_on_it(shop: Cli) -> None:
    # Given a second customer record with the same email (a duplicate in the shop)
    write(shop, "customers", f"external_id,name,email\nB3,A. Q.,{EMAIL}\n", "--now", NOW)
    # When B1 is erased
    erased = shop("customers", "erase", "B1", "--yes", "--format", "json")
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["other_customers_suppressed"] == 1
    # Then the address that was erased is never mailed through the duplicate either
    held = json.loads(shop("customers", "export", "B3").stdout)
    assert [(s["channel"], s["address"], s["reason"]) for s in held["suppressions"]] == [
        ("email", EMAIL, "erased customer")]

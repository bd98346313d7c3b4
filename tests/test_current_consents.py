"""Each customer's current consent per channel, kept by the database: whatever
writes the consent ledger — the ORM, the CSV import, the unsubscribe and STOP
webhooks, bulk SQL, updates and deletes — ``current_consents`` equals the
latest ledger row of every (customer, channel), on SQLite and PostgreSQL; and
planning "as of" an earlier moment still reads the consent of that moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from factories import add_consent, add_customer, add_order, loaded_rule, old_database
from outreach.domain import Channel, ConsentStatus
from outreach.planning.launch import plan_rule
from outreach.store.engine import migrate, transaction
from outreach.store.models import ConsentRecord, CurrentConsent, Customer

NOW = datetime(2026, 6, 1, 12, 0)

Current = dict[tuple[int, Channel], tuple[ConsentStatus, datetime, int]]


def recomputed(session: Session) -> Current:
    """The latest ledger row per (customer, channel), by (recorded_at, id)."""
    latest: Current = {}
    for r in session.scalars(select(ConsentRecord).order_by(ConsentRecord.recorded_at, ConsentRecord.id)):
        latest[(r.customer_id, r.channel)] = (r.status, r.recorded_at, r.id)
    return latest


def maintained(session: Session) -> Current:
    return {(c.customer_id, c.channel): (c.status, c.recorded_at, c.consent_id)
            for c in session.scalars(select(CurrentConsent))}


def assert_consistent(engine: Engine) -> None:
    with Session(engine) as s:
        assert maintained(s) == recomputed(s)


# (operation, customer, channel, record, hour, granted): hours collide often,
# so equal timestamps (decided by the ledger id) are exercised.
operation = st.tuples(
    st.sampled_from(["insert", "insert", "insert", "bulk_insert", "flip", "retime", "move", "delete",
                     "bulk_delete"]),
    st.integers(min_value=0, max_value=2),
    st.sampled_from([Channel.EMAIL, Channel.SMS]),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=4),
    st.booleans(),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(operation, min_size=1, max_size=25))
def test_current_consent_equals_the_latest_ledger_row_after_any_history(
    engine: Engine, history: list[tuple[str, int, Channel, int, int, bool]]
) -> None:
    with transaction(engine) as s:
        s.execute(delete(ConsentRecord))
        s.execute(delete(Customer))
        people = [add_customer(s, f"K{n}").id for n in range(3)]
    for op, who, channel, n, hour, granted in history:
        status = ConsentStatus.GRANTED if granted else ConsentStatus.REVOKED
        at = NOW + timedelta(hours=hour)
        with transaction(engine) as s:
            records = list(s.scalars(select(ConsentRecord).order_by(ConsentRecord.id)))
            target = records[n % len(records)] if records else None
            if op == "insert" or target is None:
                s.add(ConsentRecord(customer_id=people[who], channel=channel, status=status, source="test",
                                    recorded_at=at))
            elif op == "bulk_insert":  # one statement, several rows of one (customer, channel)
                s.execute(text(
                    "INSERT INTO consents (customer_id, channel, status, source, recorded_at) "
                    "VALUES (:c, :ch, 'granted', 'sql', :t), (:c, :ch, 'revoked', 'sql', :t), "
                    "(:c, :ch, :st, 'sql', :t2)"
                ), {"c": people[who], "ch": channel.value, "st": status.value, "t": at,
                    "t2": at - timedelta(hours=1)})
            elif op == "flip":
                target.status = status
            elif op == "retime":
                target.recorded_at = at
            elif op == "move":
                target.customer_id = people[who]
            elif op == "delete":
                s.delete(target)
            else:
                s.execute(delete(ConsentRecord).where(ConsentRecord.recorded_at <= at))
        assert_consistent(engine)


def test_unsubscribe_after_grant_is_current_at_once(engine: Engine) -> None:
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_consent(s, ada, "email", "granted", at=NOW - timedelta(days=30))
        add_consent(s, ada, "sms", "granted", at=NOW - timedelta(days=30))
        add_consent(s, ada, "email", "revoked", at=NOW)
        ada_id = ada.id
    with Session(engine) as s:
        assert {key: (status, at) for key, (status, at, _id) in maintained(s).items()} == {
            (ada_id, Channel.EMAIL): (ConsentStatus.REVOKED, NOW),
            (ada_id, Channel.SMS): (ConsentStatus.GRANTED, NOW - timedelta(days=30)),
        }
    # Deleting the customer (erasure) removes the current consent with the ledger
    with transaction(engine) as s:
        s.execute(delete(Customer).where(Customer.id == ada_id))
    with Session(engine) as s:
        assert maintained(s) == {}


def test_csv_import_keeps_current_consents(engine: Engine) -> None:
    from outreach.importing import import_csv

    fixtures = Path(__file__).parent / "fixtures" / "import"
    import_csv(engine, "customers", fixtures / "customers.csv", now=NOW)
    import_csv(engine, "consents", fixtures / "consents_grant.csv", now=NOW)
    with Session(engine) as s:
        granted = maintained(s)
    assert granted and {v[0] for v in granted.values()} == {ConsentStatus.GRANTED}
    import_csv(engine, "consents", fixtures / "consents_revoke.csv", now=NOW + timedelta(days=1))
    with Session(engine) as s:
        assert maintained(s) != granted
    assert_consistent(engine)


RULE = loaded_rule("""
name: hello
trigger: {type: inactivity, days: 30}
template: winback
channels: [email]
""")


def test_planning_as_of_an_earlier_moment_reads_the_consent_of_that_moment(engine: Engine) -> None:
    # Given a lapsed customer who granted email consent and revoked it later
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_order(s, ada, NOW - timedelta(days=90), 20)
        add_consent(s, ada, "email", "granted", at=NOW - timedelta(days=60))
        add_consent(s, ada, "email", "revoked", at=NOW)
    # When the rule is evaluated as of a day before the revocation, then now
    before, _ = plan_rule(engine, RULE, now=NOW - timedelta(days=1))
    after, _ = plan_rule(engine, RULE, now=NOW + timedelta(minutes=1))
    # Then she was permitted then (the ledger answers), and is not now
    assert (before.planned + before.held_out, after.planned + after.held_out) == (1, 0)


def test_upgrading_an_existing_database_fills_current_consents(tmp_path: Path) -> None:
    engine = old_database(tmp_path / "old.db", "0003", now=NOW)
    with engine.begin() as conn:
        for n, status in enumerate(["granted", "revoked", "granted"]):
            conn.execute(text(
                "INSERT INTO consents (customer_id, channel, status, source, recorded_at) "
                "VALUES (1, 'email', :s, 'import', :t)"
            ), {"s": status, "t": NOW - timedelta(days=2 - n)})
    migrate(engine)
    with transaction(engine) as s:
        assert [(k, v[:2]) for k, v in maintained(s).items()] == [((1, Channel.EMAIL), (ConsentStatus.GRANTED, NOW))]
        s.execute(update(ConsentRecord).where(ConsentRecord.recorded_at == NOW).values(status="revoked"))
    assert_consistent(engine)
    engine.dispose()


def test_concurrent_consent_writes_keep_the_latest(engine: Engine) -> None:
    """An unsubscribe and an older grant (an import) written by concurrent
    transactions: whichever commits last, the later-recorded one is current."""
    import threading

    with transaction(engine) as s:
        ada_id = add_customer(s, "ada").id
    unsubscribe = engine.connect()
    tx = unsubscribe.begin()
    unsubscribe.execute(text(
        "INSERT INTO consents (customer_id, channel, status, source, recorded_at) "
        "VALUES (:c, 'email', 'revoked', 'unsubscribe', :t)"), {"c": ada_id, "t": NOW})

    def import_old_grant() -> None:
        with transaction(engine) as s:
            s.add(ConsentRecord(customer_id=ada_id, channel=Channel.EMAIL, status=ConsentStatus.GRANTED,
                                source="import", recorded_at=NOW - timedelta(days=1)))

    importer = threading.Thread(target=import_old_grant)
    importer.start()
    importer.join(timeout=0.5)  # PostgreSQL: waits on the row; SQLite: on the write lock
    tx.commit()
    unsubscribe.close()
    importer.join(timeout=30)
    assert not importer.is_alive()
    with Session(engine) as s:
        assert maintained(s)[(ada_id, Channel.EMAIL)][0] is ConsentStatus.REVOKED
    assert_consistent(engine)

"""The Alembic migration builds exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from outreach.store.models import Base


def test_migration_from_empty_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_messages_cannot_hold_the_same_occurrence_twice(engine: Engine) -> None:
    uniques = inspect(engine).get_unique_constraints("messages")
    assert {"rule_id", "customer_id", "occurrence_key"} in [set(u["column_names"]) for u in uniques]


def test_stats_refresh_leaves_the_schema_as_migrated(engine: Engine) -> None:
    """The refresh rebuilds customer_stats' key and indexes after loading it
    (PostgreSQL); they come back under their names, and a refresh that fails
    takes nothing with it."""
    from datetime import datetime

    import pytest
    from sqlalchemy import func, select

    from factories import add_customer, add_order
    from outreach.store import stats
    from outreach.store.engine import transaction
    from outreach.store.models import CustomerStats

    now = datetime(2026, 6, 1)
    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), now)
        stats.refresh(s, now=now)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with pytest.raises(RuntimeError):
        with transaction(engine) as s:
            add_customer(s, "bo")
            stats.refresh(s, now=now)
            raise RuntimeError("interrupted")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.scalar(select(func.count()).select_from(CustomerStats)) == 1


def test_widening_the_orders_indexes_keeps_every_order_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """0006 (time index), 0008 (per-customer index) and 0009 (order lines by
    order) only swap an index: on SQLite they must not rebuild ``orders`` or
    ``order_items`` (dropping orders with foreign keys on would delete every
    order line)."""
    from datetime import datetime

    from sqlalchemy import text

    from factories import old_database
    from outreach.store.engine import migrate

    now = datetime(2026, 6, 1)
    engine = old_database(tmp_path / "old.db", "0005", now=now)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO orders (id, external_id, customer_id, ordered_at, amount, currency, source) "
                          "VALUES (1, 'O1', 1, :t, 20, 'CNY', 'import')"), {"t": now})
        conn.execute(text("INSERT INTO order_items (order_id, sku, category, quantity, amount) "
                          "VALUES (1, 'LJ-100', 'tea', 2, 20)"))
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM order_items")).scalar() == 1
        assert conn.execute(text("SELECT order_count FROM order_totals")).scalar() == 1
        columns = [i["column_names"] for i in inspect(engine).get_indexes("orders") if i["name"] == "ix_orders_time"]
        assert columns == [["ordered_at", "customer_id", "amount", "id"]]
        by_customer = [i["column_names"] for i in inspect(engine).get_indexes("orders")
                       if i["name"] == "ix_orders_customer_time"]
        assert by_customer == [["customer_id", "ordered_at", "amount", "currency"]]
        by_order = [i["column_names"] for i in inspect(engine).get_indexes("order_items")
                    if i["name"] == "ix_order_items_order"]
        assert by_order == [["order_id", "sku", "category", "quantity", "amount"]]
    engine.dispose()


def test_the_preferences_migration_downgrades_and_upgrades_again(engine: Engine) -> None:
    """0015 (topics, pauses, their evidence, double opt-in requests, rules.topic)
    comes off and back on both databases, leaving exactly the models' schema."""
    from alembic import command

    from outreach.store.engine import alembic_config, migrate

    tables = {"topic_optouts", "marketing_pauses", "preference_records", "consent_confirmations"}
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    assert not tables & set(inspect(engine).get_table_names())
    assert "topic" not in {c["name"] for c in inspect(engine).get_columns("rules")}
    migrate(engine)
    assert tables <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_the_groups_and_variants_migration_downgrades_and_upgrades_again(engine: Engine) -> None:
    """0016 (rules.assignment, messages.variant, variant_decisions) comes off and
    back on both databases, leaving exactly the models' schema."""
    from alembic import command

    from outreach.store.engine import alembic_config, migrate

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0015")
    assert "variant_decisions" not in inspect(engine).get_table_names()
    assert "assignment" not in {c["name"] for c in inspect(engine).get_columns("rules")}
    assert "variant" not in {c["name"] for c in inspect(engine).get_columns("messages")}
    migrate(engine)
    assert "variant_decisions" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_the_offers_migration_downgrades_and_upgrades_again_keeping_the_orders(engine: Engine) -> None:
    """0017 (coupon pools, codes, redemptions, orders.discount) comes off and
    back on both databases; the orders stay, and the schema is the models'."""
    from datetime import datetime

    from alembic import command
    from sqlalchemy import func, select

    from factories import add_customer, add_order
    from outreach.store.engine import alembic_config, migrate, transaction
    from outreach.store.models import Order

    with transaction(engine) as s:
        add_order(s, add_customer(s, "ada"), datetime(2026, 6, 1), 120)
    tables = {"coupon_pools", "coupons", "coupon_redemptions"}
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016")
    assert not tables & set(inspect(engine).get_table_names())
    assert "discount" not in {c["name"] for c in inspect(engine).get_columns("orders")}
    migrate(engine)
    assert tables <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(select(func.count(), func.sum(Order.amount))).one() == (1, 120)
        assert conn.scalar(select(Order.discount)) is None


def test_the_report_migrations_fill_in_what_is_there_and_come_off_and_on_again(engine: Engine) -> None:
    """0020 and 0021 on an installation with messages, orders, events and
    codes: the pairs already inside a window are written by the upgrade (the
    backfill), none else; events and codes get their message's rule, variant
    and plan time; downgraded, the table and columns go; the schema is the
    models' again."""
    from datetime import datetime, timedelta

    from alembic import command
    from sqlalchemy import select, text

    from factories import add_customer, add_order
    from outreach.domain import Channel, MessageStatus
    from outreach.store.engine import alembic_config, migrate, transaction
    from outreach.store.models import Coupon, Message, TrackingEvent, WindowOrder
    from report_helpers import add_rule

    now = datetime(2026, 6, 1)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0019")
    assert "window_orders" not in set(inspect(engine).get_table_names())
    assert "rule_id" not in {c["name"] for c in inspect(engine).get_columns("tracking_events")}
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        rule = add_rule(s, "r")
        sent = Message(rule_id=rule.id, customer_id=ada.id, channel=Channel.EMAIL, occurrence_key="k",
                       status=MessageStatus.SENT, planned_at=now, sent_at=now, attribute_until=now + timedelta(days=7))
        s.add(sent)
        s.flush()
        inside = add_order(s, ada, now + timedelta(days=1)).id
        add_order(s, ada, now + timedelta(days=8))
        message_id = sent.id
        sent.variant = "b"
        s.flush()
        # Written as the code of 0019 wrote them: without the columns 0021 adds
        s.execute(text("INSERT INTO tracking_events (type, message_id, occurred_at, source, simulated, payload) "
                       "VALUES ('open', :m, :t, 'test', false, '{}'), ('open', NULL, :t, 'test', false, '{}')"),
                  {"m": message_id, "t": now})
        pool = s.execute(text("INSERT INTO coupon_pools (name, created_at) VALUES ('p', :t) RETURNING id"),
                         {"t": now}).scalar_one()
        s.execute(text("INSERT INTO coupons (pool_id, code, source, added_at, message_id, given_at) "
                       "VALUES (:p, 'A1', 'generated', :t, :m, :t), (:p, 'A2', 'generated', :t, NULL, NULL)"),
                  {"p": pool, "m": message_id, "t": now})
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(select(WindowOrder.message_id, WindowOrder.order_id)).all() == [(message_id, inside)]
        assert sorted(conn.execute(select(TrackingEvent.rule_id, TrackingEvent.planned_at)).all(),
                      key=str) == sorted([(rule.id, now), (None, None)], key=str)
        assert sorted(conn.execute(select(Coupon.code, Coupon.rule_id, Coupon.variant, Coupon.planned_at)).all()) == [
            ("A1", rule.id, "b", now), ("A2", None, None, None)]

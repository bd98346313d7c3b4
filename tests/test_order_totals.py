"""Per-customer aggregates the database keeps: whatever writes orders and their
items — the ORM, the CSV import (insert and upsert), bulk SQL, deletes,
concurrent transactions — each customer's order totals (count, revenue, first
and last order) and bought products (first and last purchase of each SKU and
category) stay equal to aggregating ``orders`` and ``order_items``, on SQLite
and PostgreSQL; and rules read them "as of" any moment."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from factories import add_customer, add_order, old_database
from outreach.importing import import_csv
from outreach.rules import parse_rule
from outreach.store.engine import make_engine, migrate, transaction
from outreach.store.models import Customer, CustomerProduct, Order, OrderItem, OrderTotals
from outreach.store.segments import compile_condition

NOW = datetime(2026, 6, 1, 12, 0)
PRODUCTS = [("LJ-100", "tea"), ("YX-POT", "teaware"), ("MOON-CK", None), ("LJ-100", "gift")]
IMPORT = Path(__file__).parent / "fixtures" / "import"


def recomputed(session: Session) -> dict[int, tuple[int, Decimal, datetime, datetime]]:
    rows = session.execute(
        select(Order.customer_id, func.count(), func.sum(Order.amount), func.min(Order.ordered_at),
               func.max(Order.ordered_at)).group_by(Order.customer_id)
    )
    return {cid: (n, Decimal(total).quantize(Decimal("0.01")), first, last) for cid, n, total, first, last in rows}


def maintained(session: Session) -> dict[int, tuple[int, Decimal, datetime, datetime]]:
    return {
        t.customer_id: (t.order_count, t.revenue, t.first_order_at, t.last_order_at)
        for t in session.scalars(select(OrderTotals))
    }


def products_recomputed(session: Session) -> dict[tuple[int, str, str], tuple[datetime, datetime]]:
    category = func.coalesce(OrderItem.category, "")
    rows = session.execute(
        select(Order.customer_id, OrderItem.sku, category, func.min(Order.ordered_at), func.max(Order.ordered_at))
        .join(OrderItem, OrderItem.order_id == Order.id)
        .group_by(Order.customer_id, OrderItem.sku, category)
    )
    return {(cid, sku, cat): (first, last) for cid, sku, cat, first, last in rows}


def products_maintained(session: Session) -> dict[tuple[int, str, str], tuple[datetime, datetime]]:
    return {
        (p.customer_id, p.sku, p.category): (p.first_bought_at, p.last_bought_at)
        for p in session.scalars(select(CustomerProduct))
    }


def assert_consistent(engine: Engine) -> None:
    with Session(engine) as s:
        assert maintained(s) == recomputed(s)
        assert products_maintained(s) == products_recomputed(s)


# A random history of writes to orders: (operation, customer, order, day, amount)
operation = st.tuples(
    st.sampled_from(["insert", "insert", "insert", "amount", "move", "retime", "delete", "bulk_delete",
                     "reitem", "recategorize"]),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=-400, max_value=30),
    st.decimals(min_value=0, max_value=999, places=2),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(operation, min_size=1, max_size=25))
def test_totals_equal_aggregating_orders_after_any_history_of_writes(
    engine: Engine, history: list[tuple[str, int, int, int, Decimal]]
) -> None:
    with transaction(engine) as s:
        s.execute(delete(Order))
        s.execute(delete(Customer))
        people = [add_customer(s, f"T{n}").id for n in range(4)]
    for step, (op, who, n, day, amount) in enumerate(history):
        with transaction(engine) as s:
            orders = list(s.scalars(select(Order).order_by(Order.id)))
            target = orders[n % len(orders)] if orders else None
            if op == "insert" or target is None:
                order = Order(external_id=f"X{step}", customer_id=people[who],
                              ordered_at=NOW + timedelta(days=day), amount=amount)
                order.items = [OrderItem(sku=PRODUCTS[(n + k) % len(PRODUCTS)][0],
                                         category=PRODUCTS[(n + k) % len(PRODUCTS)][1]) for k in range(n % 3)]
                s.add(order)
            elif op == "reitem":  # what a re-import does: the order's lines replaced
                target.items = [OrderItem(sku=PRODUCTS[(n + day) % len(PRODUCTS)][0], category=None)]
            elif op == "recategorize":
                s.execute(update(OrderItem).where(OrderItem.sku == PRODUCTS[n % len(PRODUCTS)][0])
                          .values(category="gift"))
            elif op == "amount":
                target.amount = amount
            elif op == "move":
                target.customer_id = people[who]
            elif op == "retime":
                target.ordered_at = NOW + timedelta(days=day)
            elif op == "delete":
                s.delete(target)
            else:  # one statement removing several orders of several customers
                s.execute(delete(Order).where(Order.amount < amount))
        assert_consistent(engine)


def test_bulk_sql_and_no_op_updates_keep_totals(engine: Engine) -> None:
    # Given two customers with orders written by plain SQL, several per statement
    with transaction(engine) as s:
        ada, bo = add_customer(s, "ada").id, add_customer(s, "bo").id
        for n in range(6):
            s.execute(text(
                "INSERT INTO orders (external_id, customer_id, ordered_at, amount, currency, source) "
                "VALUES (:e1, :a, :t1, 10.50, 'CNY', 'sql'), (:e2, :b, :t2, 3.25, 'CNY', 'sql')"
            ), {"e1": f"A{n}", "e2": f"B{n}", "a": ada, "b": bo,
                "t1": NOW - timedelta(days=n), "t2": NOW - timedelta(days=10 * n)})
    with Session(engine) as s:
        assert maintained(s)[ada] == (6, Decimal("63.00"), NOW - timedelta(days=5), NOW)
    # When every order is "updated" to the same values, then one moves to bo
    with transaction(engine) as s:
        s.execute(update(Order).values(amount=Order.amount))
        s.execute(update(Order).where(Order.external_id == "A0").values(customer_id=bo))
    with Session(engine) as s:
        assert maintained(s)[ada] == (5, Decimal("52.50"), NOW - timedelta(days=5), NOW - timedelta(days=1))
        assert maintained(s)[bo][:2] == (7, Decimal("30.00"))
    assert_consistent(engine)


def test_one_upsert_that_inserts_and_updates_orders_of_a_customer_keeps_totals(engine: Engine) -> None:
    # Given a customer with one order (PostgreSQL fires the statement's UPDATE
    # trigger and its INSERT trigger one after the other: the totals must not
    # count the new order twice, whichever runs first)
    with transaction(engine) as s:
        ada = add_customer(s, "ada").id
        add_order(s, s.get(Customer, ada), NOW, 10)
        first = s.scalar(select(Order.external_id).where(Order.customer_id == ada))
    upsert = ("INSERT INTO orders (external_id, customer_id, ordered_at, amount, currency, source) "
              "VALUES (:old, :c, :t1, 12.00, 'CNY', 'sql'), ('NEW-1', :c, :t2, 5.00, 'CNY', 'sql') "
              "ON CONFLICT (external_id) DO UPDATE SET amount = excluded.amount, ordered_at = excluded.ordered_at")
    # When one statement updates that order and inserts another of the same customer
    with transaction(engine) as s:
        s.execute(text(upsert), {"old": first, "c": ada, "t1": NOW - timedelta(days=1), "t2": NOW + timedelta(days=1)})
    # Then the totals are the orders': two, 17.00, from the moved first to the new last
    with Session(engine) as s:
        assert maintained(s)[ada] == (2, Decimal("17.00"), NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert_consistent(engine)


def test_csv_import_and_reimport_keep_totals(engine: Engine) -> None:
    import_csv(engine, "customers", IMPORT / "customers.csv", now=NOW)
    import_csv(engine, "orders", IMPORT / "orders.csv", now=NOW)
    assert_consistent(engine)
    # Re-importing changes O1001's amount (an upsert) and adds O1004
    import_csv(engine, "orders", IMPORT / "orders_update.csv", now=NOW)
    with Session(engine) as s:
        c001 = s.scalar(select(Customer.id).where(Customer.external_id == "C001"))
        assert maintained(s)[c001][:2] == (1, Decimal("118.00"))
    assert_consistent(engine)


def test_upgrading_an_existing_database_fills_the_totals(tmp_path: Path) -> None:
    # Given a database at the first schema revision with orders in it
    engine = old_database(tmp_path / "old.db", "0001", now=NOW)
    with engine.begin() as conn:
        for n in range(3):
            conn.execute(text(
                "INSERT INTO orders (external_id, customer_id, ordered_at, amount, currency, source) "
                "VALUES (:e, 1, :t, 20, 'CNY', 'import')"
            ), {"e": f"O{n}", "t": NOW - timedelta(days=n)})
    # When it is upgraded
    migrate(engine)
    # Then the existing orders are counted, and new ones are kept up
    with transaction(engine) as s:
        assert maintained(s) == {1: (3, Decimal("60.00"), NOW - timedelta(days=2), NOW)}
        s.add(Order(external_id="O9", customer_id=1, ordered_at=NOW + timedelta(days=1), amount=Decimal(5)))
    assert_consistent(engine)
    engine.dispose()


def test_concurrent_insert_and_delete_lose_no_order(engine: Engine) -> None:
    """A delete recomputes from orders; an insert committed by another
    transaction meanwhile must not be lost (PostgreSQL runs them concurrently;
    SQLite serializes writers)."""
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        first = add_order(s, ada, NOW - timedelta(days=3), 10).id
        add_order(s, ada, NOW - timedelta(days=2), 20)
        ada_id = ada.id
    # Given one transaction that inserted an order and has not committed yet
    inserter = engine.connect()
    tx = inserter.begin()
    inserter.execute(text(
        "INSERT INTO orders (external_id, customer_id, ordered_at, amount, currency, source) "
        "VALUES ('late', :c, :t, 40, 'CNY', 'import')"
    ), {"c": ada_id, "t": NOW})

    def remove() -> None:
        with transaction(engine) as s:
            s.execute(delete(Order).where(Order.id == first))

    # When another deletes an order of the same customer (it waits for the first)
    if engine.dialect.name == "postgresql":
        deleter = threading.Thread(target=remove)
        deleter.start()
        deleter.join(timeout=0.5)
        assert deleter.is_alive(), "the delete should wait for the insert's lock"
        tx.commit()
        deleter.join(timeout=10)
    else:
        tx.commit()
        remove()
    inserter.close()
    # Then both changes count
    with Session(engine) as s:
        assert maintained(s)[ada_id] == (2, Decimal("60.00"), NOW - timedelta(days=2), NOW)
    assert_consistent(engine)


def test_segments_on_all_time_order_figures_read_as_of_now(engine: Engine) -> None:
    # Given a customer whose second order is after the moment evaluated
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_order(s, ada, NOW - timedelta(days=40), 100)
        add_order(s, ada, NOW + timedelta(days=2), 300)
        bo = add_customer(s, "bo")
        add_order(s, bo, NOW + timedelta(days=1), 50)

    def who(condition: str, now: datetime) -> set[str]:
        spec = parse_rule(f"name: t\ntrigger: {{type: inactivity, days: 1}}\ntemplate: x\nchannels: [email]\n"
                          f"segment: {condition}\n", file="t.yaml")
        with Session(engine) as s:
            return set(s.scalars(select(Customer.external_id).where(compile_condition(spec.segment, now))))

    # Then, as of NOW, only the first order counts; later, both do
    assert who("{orders: {metric: count, eq: 1}}", NOW) == {"ada"}
    assert who("{orders: {metric: total, gte: 100}}", NOW) == {"ada"}
    assert who("{orders: {metric: days_since_last, gte: 40}}", NOW) == {"ada"}
    assert who("{orders: {metric: count, eq: 0}}", NOW) == {"bo"}
    later = NOW + timedelta(days=3)
    assert who("{orders: {metric: count, eq: 2}}", later) == {"ada"}
    assert who("{orders: {metric: average, eq: 200}}", later) == {"ada"}
    assert who("{orders: {metric: days_since_first, gte: 43}}", later) == {"ada"}


def test_the_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    from alembic import command

    from outreach.store.engine import alembic_config

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    engine = make_engine(url)
    migrate(engine)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        assert "order_totals" not in {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    migrate(engine)
    with transaction(engine) as s:
        ada = add_customer(s, "ada")
        add_order(s, ada, NOW, 12)
    assert_consistent(engine)
    engine.dispose()

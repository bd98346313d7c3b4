"""CSV import: what a marketer sees when they load customers, orders, consents
and events — on SQLite and PostgreSQL (the ``engine`` fixture runs both)."""

from __future__ import annotations

import csv
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus, CustomerType
from outreach.errors import ImportRowError
from outreach.importing import ImportResult, import_csv, normalize_email, normalize_phone
from outreach.store.models import Base, ConsentRecord, Customer, CustomEvent, Order

FIXTURES = Path(__file__).parent / "fixtures" / "import"
NOW = datetime(2026, 3, 1, 12, 0)
PHONE_HINT = "write phone numbers in international form, e.g. +8613812345678"


# ------------------------------------------------------------------ helpers
def run(engine: Engine, kind: str, name: str | Path, *, now: datetime = NOW, **options: Any) -> ImportResult:
    path = name if isinstance(name, Path) else FIXTURES / name
    return import_csv(engine, kind, path, now=now, **options)  # type: ignore[arg-type]


def customers(engine: Engine) -> dict[str, Customer]:
    with Session(engine) as session:
        return {c.external_id: c for c in session.scalars(select(Customer))}


def orders(engine: Engine) -> dict[str, Order]:
    with Session(engine) as session:
        return {o.external_id: o for o in session.scalars(select(Order))}


def ledger(engine: Engine) -> list[tuple[str, Channel, ConsentStatus, str, datetime]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Customer.external_id, ConsentRecord.channel, ConsentRecord.status, ConsentRecord.source,
                   ConsentRecord.recorded_at)
            .join(Customer, Customer.id == ConsentRecord.customer_id)
            .order_by(Customer.external_id, ConsentRecord.channel, ConsentRecord.recorded_at)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: to show that a failed import changed nothing."""
    with engine.connect() as conn:
        return {
            table.name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
            for table in Base.metadata.sorted_tables
        }


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------ customers
def test_customers_import_with_chinese_names_and_normalized_contacts(engine: Engine) -> None:
    result = run(engine, "customers", "customers.csv")

    assert (result.rows, result.inserted, result.updated, result.rejected) == (3, 3, 0, 0)
    got = customers(engine)
    wang, li, emma = got["C001"], got["C002"], got["C003"]
    assert wang.name == "王小明"
    assert wang.email == "wang.xm@example.com"  # trimmed and lowercased
    assert wang.phone == "+8613812345678"  # "+86 138-1234-5678"
    assert li.phone == "+8613987654321"  # "0086 (139) 8765 4321"
    assert emma.phone == "+14155550100"
    assert (wang.birthday, wang.birth_month, wang.birth_day) == (date(1990, 5, 17), 5, 17)
    assert li.birthday is None and li.birth_month is None
    assert (wang.timezone, wang.locale) == ("Asia/Shanghai", "zh_CN")
    assert li.locale == "zh_CN"  # written "zh-cn"
    assert [c.customer_type for c in (wang, li, emma)] == [
        CustomerType.RETAIL, CustomerType.BUSINESS, CustomerType.DISTRIBUTOR,
    ]
    assert sorted(t.tag for t in wang.tags) == ["newsletter", "vip"]
    assert emma.tags == []
    # Columns the importer does not know are kept as attributes; empty cells are not.
    assert wang.attributes == {"city": "上海", "favourite_tea": "龙井"}
    assert li.attributes == {"city": "北京"}
    assert wang.created_at == datetime(2024, 1, 15, 2, 0)  # +08:00 -> UTC
    assert li.created_at == NOW  # no created_at: the import's time
    assert wang.updated_at == NOW


def test_reimport_updates_customers_without_duplicates(engine: Engine) -> None:
    # Given the customers imported once
    run(engine, "customers", "customers.csv")

    # When a second file updates C001 and adds C004
    result = run(engine, "customers", "customers_update.csv", now=datetime(2026, 3, 2))

    # Then C001 is updated in place and C004 inserted
    assert (result.rows, result.inserted, result.updated) == (2, 1, 1)
    got = customers(engine)
    assert sorted(got) == ["C001", "C002", "C003", "C004"]
    wang = got["C001"]
    assert wang.email == "xiaoming.wang@example.com"
    assert [t.tag for t in wang.tags] == ["vip"]  # tags replaced
    assert wang.created_at == datetime(2024, 1, 15, 2, 0)  # kept
    assert wang.updated_at == datetime(2026, 3, 2)
    # Columns the second file does not have are left as they were...
    assert (wang.timezone, wang.locale, wang.birthday) == ("Asia/Shanghai", "zh_CN", date(1990, 5, 17))
    # ...and attributes are merged column by column.
    assert wang.attributes == {"city": "杭州", "favourite_tea": "龙井"}
    assert got["C004"].phone == "+8618600001111"

    # And importing the same file again changes nothing but counts updates
    again = run(engine, "customers", "customers.csv")
    assert (again.inserted, again.updated) == (0, 3)
    assert len(customers(engine)) == 4


def test_same_key_twice_in_one_batch_the_later_row_wins(engine: Engine, tmp_path: Path) -> None:
    run(engine, "customers", "customers.csv")
    path = write_csv(
        tmp_path / "o.csv",
        ["external_id", "customer_id", "ordered_at", "amount", "items"],
        [["O1", "C001", "2026-01-01", "10.00", "A"], ["O1", "C002", "2026-01-02", "20.00", "B|tea;C"]],
    )
    result = run(engine, "orders", path)
    assert (result.rows, result.inserted, result.updated) == (2, 1, 1)
    [order] = orders(engine).values()
    assert (order.customer_id, order.amount) == (customers(engine)["C002"].id, Decimal("20.00"))
    assert sorted(i.sku for i in order.items) == ["B", "C"]


def test_bad_rows_are_all_reported_and_nothing_is_committed(engine: Engine) -> None:
    # Given a database with some customers
    run(engine, "customers", "customers.csv")
    before = snapshot(engine)

    # When a file with good and bad rows is imported, one row per batch, so
    # the good row 2 has already been written when row 3 turns out bad
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", "customers_bad.csv", batch_size=1)

    # Then every bad row is reported with file, row, column and a hint
    problems = caught.value.problems
    assert [(p.row, p.field) for p in problems] == [
        (3, "email"), (4, "phone"), (5, "timezone"), (6, "external_id"), (7, "birthday"),
    ]
    assert all(p.file == str(FIXTURES / "customers_bad.csv") and p.hint for p in problems)
    phone = problems[1]
    assert "13812345678" in phone.message and phone.hint == PHONE_HINT
    assert "customers_bad.csv, row 4, field 'phone'" in str(caught.value)
    # And nothing was committed, not even the good rows
    assert snapshot(engine) == before


def test_skip_invalid_imports_good_rows_and_writes_reject_file(engine: Engine, tmp_path: Path) -> None:
    source = shutil.copy(FIXTURES / "customers_bad.csv", tmp_path / "customers.csv")

    result = run(engine, "customers", Path(source), skip_invalid=True, batch_size=3)

    assert (result.rows, result.inserted, result.updated, result.rejected) == (7, 2, 0, 5)
    assert sorted(customers(engine)) == ["C010", "C015"]
    assert result.reject_path == tmp_path / "customers.rejects.csv"
    with result.reject_path.open(encoding="utf-8-sig", newline="") as f:
        rejects = list(csv.DictReader(f))
    assert list(rejects[0]) == ["external_id", "name", "email", "phone", "birthday", "timezone", "error"]
    assert [r["external_id"] for r in rejects] == ["C011", "C012", "C013", "", "C014"]
    assert rejects[1]["name"] == "陈静" and rejects[1]["phone"] == "13812345678"
    assert rejects[1]["error"].startswith("phone: ") and PHONE_HINT in rejects[1]["error"]

    # The reject file, fixed in a spreadsheet, imports (its error column is not data)
    rows = [dict(r) for r in rejects]
    rows[0]["email"], rows[1]["phone"], rows[2]["timezone"] = "liuyang@example.com", "+8613812345678", "UTC"
    rows[3]["external_id"], rows[4]["birthday"] = "C016", "1992-02-28"
    fixed = write_csv(tmp_path / "fixed.csv", list(rows[0]), [list(r.values()) for r in rows])
    again = run(engine, "customers", fixed, skip_invalid=True, reject_path=tmp_path / "again.csv")
    assert (again.inserted, again.rejected) == (5, 0)
    assert customers(engine)["C011"].attributes == {}


def test_missing_required_column_is_one_problem_at_row_1(engine: Engine) -> None:
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", "customers_missing_column.csv", skip_invalid=True)

    [problem] = caught.value.problems
    assert problem.row == 1 and "external_id" in problem.message
    assert "external_id,name,email,phone" in (problem.hint or "")
    assert customers(engine) == {}
    assert not (FIXTURES / "customers_missing_column.rejects.csv").exists()


def test_missing_columns_of_an_orders_file_are_named_together(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", ["external_id", "ordered_at"], [["O1", "2026-01-01"]])
    with pytest.raises(ImportRowError) as caught:
        run(engine, "orders", path)
    [problem] = caught.value.problems
    assert "customer_id, amount" in problem.message
    assert problem.hint and "external_id,customer_id,ordered_at,amount,currency,coupon_code,items" in problem.hint


def test_semicolon_separated_file_gets_a_hint(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("external_id;name\nC1;Li Wei\n", encoding="utf-8")
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    [problem] = caught.value.problems
    assert problem.row == 1 and (problem.hint or "").startswith("separate the columns with commas")


def test_bom_header_and_row_numbers_as_a_spreadsheet_shows_them(engine: Engine, tmp_path: Path) -> None:
    # Given a UTF-8 file with BOM (Excel's "CSV UTF-8"), a name spanning two
    # lines, a blank row and a bad row below them
    path = write_csv(
        tmp_path / "c.csv",
        ["external_id", "name", "email"],
        [["C1", "欧阳\n娜娜", "oy@example.com"], [], ["C2", "钱多多", "qian@"]],
        encoding="utf-8-sig",
    )
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    # Then the bad row is row 4: header 1, C1 2, blank 3
    assert [(p.row, p.field) for p in caught.value.problems] == [(4, "email")]

    result = run(engine, "customers", path, skip_invalid=True)
    assert customers(engine)["C1"].name == "欧阳 娜娜"  # a line break inside a name cell becomes a space
    assert result.rows == 2


def test_file_that_is_not_utf8_is_a_clear_problem(engine: Engine, tmp_path: Path) -> None:
    rows = [["C1", "王小明"], ["C2", "李娜"]]
    gbk = write_csv(tmp_path / "gbk.csv", ["external_id", "name"], rows, encoding="gbk")
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", gbk, skip_invalid=True)
    [problem] = caught.value.problems
    assert problem.row == 2 and "not UTF-8" in problem.message and "CSV UTF-8" in (problem.hint or "")
    assert list(tmp_path.glob("gbk.rejects*")) == []  # no reject file of a failed import

    utf16 = write_csv(tmp_path / "utf16.csv", ["external_id", "name"], rows, encoding="utf-16")
    with pytest.raises(ImportRowError, match="UTF-16"):
        run(engine, "customers", utf16)

    workbook = tmp_path / "customers.xlsx"
    workbook.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))
    with pytest.raises(ImportRowError, match="workbook, not CSV"):
        run(engine, "customers", workbook)

    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"external_id,name\nC1,Li\x00Wei\n")
    with pytest.raises(ImportRowError, match="NUL"):
        run(engine, "customers", nul)
    assert customers(engine) == {}


def test_cells_without_a_column_are_reported(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("external_id,name,city\nC1,Li Wei,Shanghai, China\n", encoding="utf-8")
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    [problem] = caught.value.problems
    assert problem.row == 2 and "4 cells" in problem.message and "double quotes" in (problem.hint or "")


def test_an_unclosed_quote_is_an_error_not_rows_swallowed(engine: Engine, tmp_path: Path) -> None:
    # Given a file whose row 3 opens a quote it never closes (the rows after it would become one cell)
    path = tmp_path / "c.csv"
    path.write_text('external_id,name,email\nC1,Li Wei,li@example.com\nC2,"Wang Fang,wang@example.com\n'
                    "C3,Zhang Min,zhang@example.com\nC4,Chen Jie,chen@example.com\n", encoding="utf-8")
    before = snapshot(engine)
    # When it is imported, it fails at the row of the quote, with a hint, and nothing is written
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    [problem] = caught.value.problems
    assert problem.row == 3 and "never closed" in problem.message and '""' in (problem.hint or "")
    assert snapshot(engine) == before


def test_a_short_row_is_refused_instead_of_emptying_columns(engine: Engine, tmp_path: Path) -> None:
    # Given a customer with an email and a phone
    write_csv(tmp_path / "a.csv", ["external_id", "name", "email", "phone"],
              [["C1", "Li Wei", "li@example.com", "+8613812345678"]])
    run(engine, "customers", tmp_path / "a.csv")
    # When a later file's row for them stops after the name
    path = tmp_path / "b.csv"
    path.write_text("external_id,name,email,phone\nC1,Li Wei\n", encoding="utf-8")
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    # Then the row is refused, naming what would be emptied, and the customer keeps both
    [problem] = caught.value.problems
    assert problem.row == 2 and "'email', 'phone' would be emptied" in problem.message
    assert (customers(engine)["C1"].email, customers(engine)["C1"].phone) == ("li@example.com", "+8613812345678")


def test_control_characters_in_a_name_are_refused(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["external_id", "name", "email"],
                     [["C1", "Li\x0bWei", "li@example.com"], ["C2", "Wang\u200dFang", "wang@example.com"]])
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    [problem] = caught.value.problems
    assert (problem.row, problem.field) == (2, "name") and "U+000B" in problem.message
    # And with --skip-invalid, the clean name (a zero-width joiner is text) goes in
    run(engine, "customers", path, skip_invalid=True)
    assert set(customers(engine)) == {"C2"}


def test_consent_dated_in_the_future_is_refused(engine: Engine, tmp_path: Path) -> None:
    # Given customers, and a consent file whose time is local time written without its offset
    run(engine, "customers", "customers.csv")
    ext = next(iter(customers(engine)))
    path = write_csv(tmp_path / "consents.csv", ["customer_id", "channel", "status", "source", "recorded_at"],
                     [[ext, "email", "granted", "checkout", "2026-03-01T20:00:00"]])
    before = ledger(engine)
    # When it is imported at 12:00 UTC, the row is refused: it would outrank a real opt-out until 20:00
    with pytest.raises(ImportRowError) as caught:
        run(engine, "consents", path)
    [problem] = caught.value.problems
    assert problem.field == "recorded_at" and "later than now" in problem.message and "offset" in (problem.hint or "")
    assert ledger(engine) == before


def test_problem_list_is_capped_with_a_count_of_the_rest(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["external_id", "phone"], [[f"C{i}", "12345"] for i in range(150)])
    with pytest.raises(ImportRowError) as caught:
        run(engine, "customers", path)
    problems = caught.value.problems
    assert len(problems) == 101
    assert problems[99].row == 101
    assert problems[100].message == "... and 50 more"


# ------------------------------------------------------------------ orders
def test_orders_import_with_items(engine: Engine) -> None:
    run(engine, "customers", "customers.csv")

    result = run(engine, "orders", "orders.csv", progress=True)

    assert (result.rows, result.inserted, result.rejected) == (3, 3, 0)
    got = orders(engine)
    by_id = customers(engine)
    first = got["O1001"]
    assert first.customer_id == by_id["C001"].id
    assert first.ordered_at == datetime(2024, 3, 1, 2, 30)  # +08:00 -> UTC
    assert (first.amount, first.currency, first.coupon_code, first.source) == (
        Decimal("177.00"), "CNY", "SPRING10", "import",
    )
    assert sorted((i.sku, i.category, i.quantity, i.amount) for i in first.items) == [
        ("CUP-01", "teaware", 1, Decimal("59.00")),
        ("TEA-001", "tea", 2, Decimal("118.00")),
    ]
    [(sku, category, quantity, amount)] = [(i.sku, i.category, i.quantity, i.amount) for i in got["O1002"].items]
    assert (sku, category, quantity, amount) == ("CUP-01", "teaware", 1, None)
    assert got["O1002"].currency == "CNY"  # empty cell: the default
    assert (got["O1003"].currency, got["O1003"].items) == ("USD", [])


def test_reimported_order_is_updated_and_its_items_replaced(engine: Engine) -> None:
    run(engine, "customers", "customers.csv")
    run(engine, "orders", "orders.csv")

    result = run(engine, "orders", "orders_update.csv")

    assert (result.inserted, result.updated) == (1, 1)
    got = orders(engine)
    assert sorted(got) == ["O1001", "O1002", "O1003", "O1004"]
    first = got["O1001"]
    assert first.amount == Decimal("118.00")
    assert [(i.sku, i.quantity) for i in first.items] == [("TEA-001", 2)]
    assert first.coupon_code == "SPRING10"  # the file has no coupon_code column


def test_order_of_unknown_customer(engine: Engine, tmp_path: Path) -> None:
    run(engine, "customers", "customers.csv")

    with pytest.raises(ImportRowError) as caught:
        run(engine, "orders", "orders_unknown_customer.csv")
    [problem] = caught.value.problems
    assert (problem.row, problem.field) == (3, "customer_id")
    assert problem.message == "unknown customer 'C999'" and problem.hint == "import customers first"
    assert orders(engine) == {}  # O2001 was fine but nothing is committed

    result = run(engine, "orders", "orders_unknown_customer.csv", skip_invalid=True,
                 reject_path=tmp_path / "bad-orders.csv")
    assert (result.inserted, result.rejected) == (1, 1)
    assert sorted(orders(engine)) == ["O2001"]
    assert "unknown customer 'C999'" in (tmp_path / "bad-orders.csv").read_text(encoding="utf-8-sig")


def test_bad_order_cells_are_located(engine: Engine, tmp_path: Path) -> None:
    run(engine, "customers", "customers.csv")
    path = write_csv(
        tmp_path / "o.csv",
        ["external_id", "customer_id", "ordered_at", "amount", "items"],
        [["O1", "C001", "01/03/2026", "¥59", "TEA-001|tea|two"], ["O2", "C001", "", "-5", ""]],
    )
    with pytest.raises(ImportRowError) as caught:
        run(engine, "orders", path)
    assert [(p.row, p.field) for p in caught.value.problems] == [
        (2, "ordered_at"), (2, "amount"), (2, "items"), (3, "ordered_at"), (3, "amount"),
    ]


# ------------------------------------------------------------------ consents
def test_consent_history_is_kept(engine: Engine) -> None:
    run(engine, "customers", "customers.csv")

    run(engine, "consents", "consents_grant.csv")
    run(engine, "consents", "consents_revoke.csv")

    assert ledger(engine) == [
        ("C001", Channel.EMAIL, ConsentStatus.GRANTED, "checkout", datetime(2024, 1, 15, 2, 5)),
        ("C001", Channel.EMAIL, ConsentStatus.REVOKED, "preference-centre", datetime(2024, 4, 1, 12, 0)),
        ("C001", Channel.SMS, ConsentStatus.GRANTED, "checkout", datetime(2024, 1, 15, 2, 5)),
        ("C002", Channel.EMAIL, ConsentStatus.GRANTED, "wechat-form", datetime(2024, 2, 1, 9, 0)),
    ]


def test_reimporting_identical_consents_adds_nothing(engine: Engine) -> None:
    run(engine, "customers", "customers.csv")
    first = run(engine, "consents", "consents_grant.csv")
    recorded = ledger(engine)

    again = run(engine, "consents", "consents_grant.csv")

    assert (first.inserted, again.inserted, again.rows) == (3, 0, 3)
    assert ledger(engine) == recorded


# ------------------------------------------------------------------ events
def test_custom_events_keep_other_columns_as_properties(engine: Engine) -> None:
    run(engine, "customers", "customers.csv")

    first = run(engine, "events", "events.csv")
    again = run(engine, "events", "events.csv")

    assert first.inserted == 2 and again.inserted == 0
    with Session(engine) as session:
        events = {e.name: e for e in session.scalars(select(CustomEvent))}
    assert len(events) == 2
    tasting = events["tasting_attended"]
    assert tasting.external_id == "E1" and tasting.occurred_at == datetime(2024, 3, 10, 7, 0)
    assert tasting.properties == {"venue": "上海店", "cups": "3"}
    assert events["catalogue_requested"].properties == {}


# ------------------------------------------------------------------ scale
def test_large_file_is_imported_in_batches(engine: Engine, tmp_path: Path) -> None:
    # Given 20,000 customers, the last 500 of which appear a second time
    # (in a later batch) with a new name
    total, repeated = 20_000, 500
    rows = [[f"C{i:06d}", f"客户{i}", f"c{i}@example.com", f"+86138{i:08d}", "a;b"] for i in range(total)]
    rows += [[f"C{i:06d}", f"新名字{i}", f"c{i}@example.com", f"+86138{i:08d}", "a"] for i in range(repeated)]
    path = write_csv(tmp_path / "big.csv", ["external_id", "name", "email", "phone", "tags"], rows)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(1))

    # When it is imported
    result = run(engine, "customers", path)

    # Then every row is counted, each customer stored once, the later row winning
    assert (result.rows, result.inserted, result.updated) == (total + repeated, total, repeated)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == total
        first = session.scalars(select(Customer).where(Customer.external_id == "C000000")).one()
        assert first.name == "新名字0" and [t.tag for t in first.tags] == ["a"]
    # And it took a handful of statements per batch, not one per row
    assert len(statements) < (total + repeated) / 100


# ------------------------------------------------------------------ values
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 1234 5678", "+8613812345678"),
        ("0086-138-1234-5678", "+8613812345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("＋８６ １３８１２３４５６７８", "+8613812345678"),  # full-width input
    ],
)
def test_normalize_phone(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["13812345678", "+0 123 4567", "+86 138 abc", "", "+1234"])
def test_normalize_phone_refuses_with_hint(raw: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. \+8613812345678"):
        normalize_phone(raw)


def test_normalize_email() -> None:
    assert normalize_email("  Li.Wei@Example.COM ") == "li.wei@example.com"
    for bad in ("li wei@example.com", "li.wei@", "example.com", "a@b@c.com"):
        with pytest.raises(ValueError, match="hint"):
            normalize_email(bad)

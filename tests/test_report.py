"""The ROI report as a finance team reads it: incremental first (sent vs the
held-out control group, with intervals and a verdict), money in one currency
with the rates given, every cost counted, last touch as a secondary view."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from factories import NOW, add_customer
from outreach.cli import main as cli
from outreach.domain import Channel, CustomerType, EventType, MessageStatus
from outreach.reporting.document import document
from outreach.reporting.money import Money
from outreach.store.engine import transaction
from outreach.store.models import TrackingEvent
from report_helpers import add_message, add_order, add_rule, give_code, record_redemptions

HELD = MessageStatus.HELD_OUT
LATER = NOW + timedelta(days=30)  # every window has closed
USD = Money("CNY", {"USD": Decimal("7.10")})


def report(engine: Engine, money: Money = USD, **kw: Any) -> dict[str, Any]:
    return document(engine, money=money, now=LATER, **kw)


def rule_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in doc["rules"] if r["rule"] == name)


def test_last_touch_is_the_secondary_view_each_order_once_for_the_latest_message(engine: Engine) -> None:
    # Given two rules that each messaged customers, and orders at the edges of the window
    with transaction(engine) as s:
        winback, birthday = add_rule(s, "winback"), add_rule(s, "birthday")
        ada, bo, cy = (add_customer(s, n) for n in ("ada", "bo", "cy"))
        for c in (ada, bo, cy):
            add_message(s, winback, c)
        later = add_message(s, birthday, bo, at=NOW + timedelta(days=1))
        add_order(s, ada, NOW + timedelta(days=7), 100)            # last instant of the window: counts
        add_order(s, cy, NOW + timedelta(days=7, seconds=1), 999)  # just after: does not
        add_order(s, cy, NOW - timedelta(hours=1), 500)            # before the send: does not
        add_order(s, bo, NOW + timedelta(days=2), 60)              # both touched bo: the later one wins
        for hours in (1, 2):
            s.add(TrackingEvent(type=EventType.OPEN, message_id=later.id, customer_id=bo.id,
                                occurred_at=NOW + timedelta(days=1, hours=hours), source="test", payload={}))
    doc = report(engine)
    winback_, birthday_ = rule_of(doc, "winback"), rule_of(doc, "birthday")
    assert winback_["last_touch"] == {"conversions": 1, "revenue": "100.00",
                                      "roi": pytest.approx((100 - 0.15) / 0.15)}
    assert (birthday_["last_touch"]["conversions"], birthday_["last_touch"]["revenue"]) == (1, "60.00")
    assert birthday_["funnel"]["opened"] == 1  # two opens of one message = one opened message
    assert winback_["cost"]["messages"] == "0.15"
    # Incremental view: bo's order is in both rules' windows, so both count it as a conversion
    assert (winback_["treated"]["converted"], winback_["treated"]["revenue"]) == (2, "160.00")


def test_usd_orders_are_converted_and_a_currency_without_rate_is_listed_not_summed(engine: Engine) -> None:
    # Given three treated customers: one orders in CNY, one in USD, one in JPY (no rate)
    with transaction(engine) as s:
        rule = add_rule(s, "winback")
        ada, bo, cy = (add_customer(s, n) for n in ("ada", "bo", "cy"))
        for c in (ada, bo, cy):
            add_message(s, rule, c)
        add_order(s, ada, NOW + timedelta(days=1), "100.00")
        add_order(s, bo, NOW + timedelta(days=1), "10.00", currency="USD")
        add_order(s, cy, NOW + timedelta(days=1), "4500", currency="JPY")
    doc = report(engine)
    r = rule_of(doc, "winback")
    # Then 10 USD counts as 71 CNY, and the yen are left out — not as revenue, not as a conversion
    assert doc["currency"] == "CNY" and doc["rates"] == {"CNY": "1", "USD": "7.10"}
    assert (r["treated"]["revenue"], r["treated"]["converted"]) == ("171.00", 2)
    assert doc["unconverted"] == [{"currency": "JPY", "orders": 1, "amount": "4500.00"}]
    assert any("JPY" in w and "rules/currency.yaml" in w for w in doc["warnings"])
    assert sum(Decimal(d["revenue"]) for d in doc["timeline"]) == Decimal("171.00")
    # And in USD as the reporting currency the same orders are 100/7.10 + 10 dollars
    dollars = report(engine, Money("USD", {"CNY": (Decimal(1) / Decimal("7.10")).quantize(Decimal("0.000001"))}))
    assert rule_of(dollars, "winback")["treated"]["revenue"] == "24.08"


def _campaign(s: Any, name: str, *, treated: int, treated_buy: int, control: int, control_buy: int,
              amount: int = 100, **definition: Any) -> None:
    rule = add_rule(s, name, **definition)
    for n in range(treated + control):
        c = add_customer(s, f"{name}-{n}")
        held = n >= treated
        add_message(s, rule, c, status=HELD if held else MessageStatus.SENT)
        if (n - treated < control_buy) if held else (n < treated_buy):
            add_order(s, c, NOW + timedelta(days=2), amount)


def test_a_rule_whose_control_group_bought_more_shows_a_loss_never_a_positive_roi(engine: Engine) -> None:
    # Given a campaign whose 300 treated customers bought less often (10%) than its 300 held out (25%)
    with transaction(engine) as s:
        _campaign(s, "backfire", treated=300, treated_buy=30, control=300, control_buy=75)
    r = rule_of(report(engine), "backfire")
    lift = r["lift"]
    # Then the lift is negative, significant, and the ROI is a loss with its interval below zero
    assert lift["conversion_pp"]["estimate"] == pytest.approx(-15.0)
    assert lift["conversion_pp"]["high"] < 0 and lift["significant"] is True
    assert lift["verdict"].startswith("significant down: the control group bought more")
    assert lift["incremental_revenue"]["estimate"] == pytest.approx(-4500.0)
    assert lift["incremental_roi"]["estimate"] < -1 and lift["incremental_roi"]["high"] < 0
    # while last touch alone would have called it a success
    assert r["last_touch"]["roi"] > 100


def test_a_small_difference_is_not_significant_yet_and_says_how_many_more_customers(engine: Engine) -> None:
    with transaction(engine) as s:
        _campaign(s, "unclear", treated=200, treated_buy=24, control=100, control_buy=10)
    r = rule_of(report(engine), "unclear")
    assert r["lift"]["significant"] is False
    assert r["lift"]["customers_needed"] > 300
    assert f"need about {r['lift']['customers_needed']:,} more customers" in r["lift"]["verdict"]
    assert not any("unclear" in w for w in report(engine)["warnings"])  # a control of 100 is enough


def test_no_control_group_means_no_lift_and_a_small_one_is_warned_about(engine: Engine) -> None:
    with transaction(engine) as s:
        _campaign(s, "nocontrol", treated=5, treated_buy=1, control=0, control_buy=0, holdout_percent=0)
        _campaign(s, "tiny", treated=50, treated_buy=10, control=9, control_buy=1, holdout_percent=15)
    doc = report(engine)
    none = rule_of(doc, "nocontrol")["lift"]
    assert none["conversion_pp"] is None and none["incremental_roi"] is None
    assert none["verdict"].startswith("no control group: holdout_percent is 0")
    assert any(w.startswith("tiny: control group of 9 customers — too small") and "holdout_percent, now 15%" in w
               for w in doc["warnings"])


def test_total_cost_counts_messages_the_fixed_cost_and_coupon_discounts_at_margin(engine: Engine) -> None:
    # Given a rule with a fixed cost of 500 and a 40% margin, whose codes were redeemed
    with transaction(engine) as s:
        rule = add_rule(s, "spring", fixed_cost="500", margin="0.40")
        buyers = []
        for n in range(4):
            c = add_customer(s, f"c{n}")
            m = add_message(s, rule, c, cost="1.00")
            give_code(s, m, f"CODE{n}")
            if n < 2:
                buyers.append(add_order(s, c, NOW + timedelta(days=1), "90.00", coupon=f"CODE{n}"))
        usd = add_customer(s, "usd")
        m = add_message(s, rule, usd, cost="1.00")
        give_code(s, m, "CODEUSD")
        buyers.append(add_order(s, usd, NOW + timedelta(days=1), "9.00", currency="USD", coupon="CODEUSD",
                                discount="1.00"))
        record_redemptions(s, buyers)
    r = rule_of(report(engine), "spring")
    # Then discounts are 10% off of 100 twice (offer terms) plus 1 USD as the shop said, in CNY
    assert r["cost"] == {"messages": "5.00", "fixed": "500.00", "discounts": "27.10", "total": "532.10"}
    assert r["offers"] == {"codes_given": 5, "redemptions": 3, "revenue": "243.90", "discount": "27.10",
                           "duplicate_uses": 0}
    assert r["margin"] == "0.40"
    assert r["last_touch"]["roi"] == pytest.approx((243.90 * 0.40 - 532.10) / 532.10)


def test_variants_are_each_compared_with_the_control_group(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = add_rule(s, "ab", variants=[{"name": "A", "weight": 50}, {"name": "B", "weight": 50}])
        for n in range(30):
            c = add_customer(s, f"v{n}")
            arm = ("A", "B", None)[n % 3]
            m = add_message(s, rule, c, status=HELD if arm is None else MessageStatus.SENT, variant=arm)
            if (arm == "A" and n < 15) or (arm is None and n < 6):
                add_order(s, c, m.planned_at + timedelta(days=1), 50)
    r = rule_of(report(engine), "ab")
    a, b = r["variants"]
    assert (a["variant"], a["weight"], a["treated"]["customers"], a["treated"]["converted"]) == ("A", 50, 10, 5)
    assert (b["variant"], b["treated"]["converted"]) == ("B", 0)
    assert a["lift"]["conversion_pp"]["estimate"] == pytest.approx(50.0 - 20.0)
    assert b["lift"]["conversion_pp"]["estimate"] == pytest.approx(-20.0)
    assert r["treated"]["customers"] == 20 and r["control"]["customers"] == 10


def test_splits_add_back_up_to_each_rule(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = add_rule(s, "mixed")
        types = [CustomerType.RETAIL, CustomerType.BUSINESS, CustomerType.DISTRIBUTOR]
        for n in range(24):
            c = add_customer(s, f"m{n}", customer_type=types[n % 3], locale=("zh_CN", "en")[n % 2])
            held = n % 4 == 0
            add_message(s, rule, c, status=HELD if held else MessageStatus.SENT,
                        channel=(Channel.EMAIL, Channel.SMS)[n % 2 if not held else 0])
            if n % 5 == 0:
                add_order(s, c, NOW + timedelta(days=1), 10 + n)
    doc = report(engine)
    r = rule_of(doc, "mixed")
    for dimension, entries in doc["splits"].items():
        for side in ("treated", "control"):
            mine = [e[side] for e in entries if e["rule"] == "mixed"]
            assert sum(e["customers"] for e in mine) == r[side]["customers"], dimension
            assert sum(e["converted"] for e in mine) == r[side]["converted"], dimension
            assert sum(Decimal(e["revenue"]) for e in mine) == Decimal(r[side]["revenue"]), dimension
    assert {e["value"] for e in doc["splits"]["customer_type"]} == {"retail", "business", "distributor"}
    assert {e["value"] for e in doc["splits"]["lifecycle_stage"]} == {"unknown"}  # no stats refreshed


def test_simulated_orders_and_events_are_counted_and_labelled(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = add_rule(s, "demo")
        c = add_customer(s, "sim")
        m = add_message(s, rule, c)
        add_order(s, c, NOW + timedelta(days=1), 80, source="simulated")
        s.add(TrackingEvent(type=EventType.CLICK, message_id=m.id, customer_id=c.id, occurred_at=NOW,
                            source="demo", payload={}, simulated=True))
    doc = report(engine)
    assert doc["simulated"] == {"orders": 1, "events": 1}
    assert rule_of(doc, "demo")["simulated_orders"] == 1
    assert any("1 simulated orders and 1 simulated events" in w for w in doc["warnings"])


def test_the_period_keeps_messages_planned_in_it_and_open_windows_are_said(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = add_rule(s, "weekly")
        for n, day in enumerate((0, 10)):
            c = add_customer(s, f"w{n}")
            add_message(s, rule, c, at=NOW + timedelta(days=day))
            add_order(s, c, NOW + timedelta(days=day + 1), 10)
    doc = document(engine, money=USD, now=NOW + timedelta(days=12), since=NOW + timedelta(days=5))
    r = rule_of(doc, "weekly")
    assert (r["funnel"]["sent"], r["treated"]["revenue"], r["open_windows"]) == (1, "10.00", 1)
    assert doc["period"] == {"since": (NOW + timedelta(days=5)).isoformat(), "until": None}
    assert "windows still open" in r["lift"]["verdict"]


# ------------------------------------------------------------------ the command
@pytest.fixture
def project(engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    monkeypatch.delenv("OUTREACH_REPORT_CURRENCY", raising=False)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "currency.yaml").write_text("currency: CNY\nrates:\n  USD: 7.10\n")
    (tmp_path / "rules" / "policy.yaml").write_text("margin: 0.5\n")
    with transaction(engine) as s:
        _campaign(s, "winback", treated=40, treated_buy=10, control=10, control_buy=1, amount=20)
        usd = add_customer(s, "usd-buyer")
        add_message(s, add_rule(s, "dollars"), usd)
        add_order(s, usd, NOW + timedelta(days=1), "10.00", currency="USD")
    return tmp_path


def test_the_command_writes_json_csv_and_tables_from_the_same_document(project: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(cli, ["report", "--format", "json", "--now", LATER.isoformat()])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["version"] == 1 and doc["rates"] == {"CNY": "1", "USD": "7.10"}
    assert rule_of(doc, "dollars")["treated"]["revenue"] == "71.00"
    assert rule_of(doc, "winback")["margin"] == "0.5"  # the policy's default margin
    assert set(doc["splits"]) == {"channel", "customer_type", "lifecycle_stage", "rfm_segment", "value_tier",
                                  "locale"}
    as_csv = runner.invoke(cli, ["report", "--format", "csv", "--now", LATER.isoformat(), "--split", "channel"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    main = next(r for r in rows if r["rule"] == "winback" and r["dimension"] == "all")
    assert (main["treated_customers"], main["control_customers"], main["treated_converted"]) == ("40", "10", "10")
    assert float(main["lift_pp"]) == pytest.approx(15.0)
    assert [r["value"] for r in rows if r["rule"] == "winback" and r["dimension"] == "channel"] == ["email"]
    table = runner.invoke(cli, ["report", "--now", LATER.isoformat(), "--split", "customer_type"])
    assert table.exit_code == 0, table.output
    assert "Incremental results" in table.output and "Split by customer_type" in table.output
    assert "too small" in table.output  # the warning about a control group of 10
    in_usd = runner.invoke(cli, ["report", "--format", "json", "--currency", "USD", "--now", LATER.isoformat()])
    assert rule_of(json.loads(in_usd.output), "dollars")["treated"]["revenue"] == "10.00"
    bad = runner.invoke(cli, ["report", "--since", "yesterday"])
    assert bad.exit_code == 2 and "not a date like 2026-11-01" in bad.output


def test_a_bad_rates_file_or_a_currency_without_rate_is_an_error_with_a_hint(project: Path) -> None:
    runner = CliRunner()
    no_rate = runner.invoke(cli, ["report", "--currency", "EUR"])
    assert no_rate.exit_code == 3
    assert "reporting currency EUR" in no_rate.output and "add 'EUR:" in no_rate.output
    (project / "rules" / "currency.yaml").write_text("currency: CNY\nrates:\n  usd: 7.10\n  EUR: -1\n")
    bad = runner.invoke(cli, ["report"])
    assert bad.exit_code != 0
    assert "currency.yaml, line 3" in bad.output and "three capital letters" in bad.output
    assert "currency.yaml, line 4" in bad.output


def test_a_significant_lift_that_costs_more_than_it_earns_is_said_not_to_pay(engine: Engine) -> None:
    with transaction(engine) as s:
        _campaign(s, "pricey", treated=200, treated_buy=80, control=200, control_buy=20, amount=10,
                  fixed_cost="5000", margin="0.5")
    lift = rule_of(report(engine), "pricey")["lift"]
    # 60 more buyers × 10 × 0.5 margin = 300 earned against 5,010 spent
    assert lift["significant"] is True and lift["verdict_short"] == "significant up"
    assert lift["incremental_roi"]["estimate"] == pytest.approx((600 * 0.5 - 5010) / 5010)
    assert "did not pay for itself" in lift["verdict"]

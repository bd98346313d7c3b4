"""The ROI report: what a marketer reads to decide whether a campaign paid."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine

from factories import NOW, add_customer, add_order
from outreach.domain import Channel, EventType, MessageStatus
from outreach.reporting.roi import build_report
from outreach.store.engine import transaction
from outreach.store.models import Message, Rule, TrackingEvent


def _rule(session, name: str) -> Rule:  # type: ignore[no-untyped-def]
    rule = Rule(name=name, path=f"rules/{name}.yaml", definition={}, checksum="x", updated_at=NOW)
    session.add(rule)
    session.flush()
    return rule


def _message(session, rule: Rule, customer, *, status=MessageStatus.SENT, sent_at=NOW,  # type: ignore[no-untyped-def]
             window_days: int = 7, cost: str = "0.05") -> Message:
    m = Message(
        rule_id=rule.id, customer_id=customer.id, channel=Channel.EMAIL, occurrence_key=f"k{customer.id}",
        status=status, to_address=customer.email, planned_at=sent_at, attempts=1,
        sent_at=sent_at if status is MessageStatus.SENT else None,
        attribute_until=sent_at + timedelta(days=window_days),
        cost=Decimal(cost) if status is MessageStatus.SENT else Decimal(0),
    )
    session.add(m)
    session.flush()
    return m


def test_revenue_inside_the_window_is_attributed_last_touch(engine: Engine) -> None:
    # Given two rules that each messaged customers, and orders at the edges of the window
    with transaction(engine) as s:
        winback, birthday = _rule(s, "winback"), _rule(s, "birthday")
        ada, bo, cy = (add_customer(s, n) for n in ("ada", "bo", "cy"))
        _message(s, winback, ada)
        _message(s, winback, bo)
        _message(s, winback, cy)
        later = _message(s, birthday, bo, sent_at=NOW + timedelta(days=1))
        later.occurrence_key = "birthday:2026"
        add_order(s, ada, NOW + timedelta(days=7), 100)            # last instant of the window: counts
        add_order(s, cy, NOW + timedelta(days=7, seconds=1), 999)  # just after: does not
        add_order(s, cy, NOW - timedelta(hours=1), 500)            # before the send: does not
        add_order(s, bo, NOW + timedelta(days=2), 60)              # both touched bo: the later one wins
        s.add(TrackingEvent(type=EventType.OPEN, message_id=later.id, customer_id=bo.id,
                            occurred_at=NOW + timedelta(days=1, hours=1), source="test", payload={}))
        s.add(TrackingEvent(type=EventType.OPEN, message_id=later.id, customer_id=bo.id,
                            occurred_at=NOW + timedelta(days=1, hours=2), source="test", payload={}))
    # When the report is built
    report = {r.rule: r for r in build_report(engine)}
    # Then each order counts once, for the message that touched the customer last
    assert (report["winback"].sent, report["winback"].conversions, report["winback"].revenue) == (3, 1, Decimal("100"))
    assert (report["birthday"].conversions, report["birthday"].revenue) == (1, Decimal("60"))
    assert report["birthday"].opens == 1  # two opens of one message = one opened message
    assert report["winback"].cost == Decimal("0.15")
    assert report["winback"].roi == float((Decimal("100") - Decimal("0.15")) / Decimal("0.15"))


def test_lift_compares_treated_with_the_held_out_control_group(engine: Engine) -> None:
    # Given 4 treated customers (2 ordered) and 4 held-out ones (1 ordered) of one rule
    with transaction(engine) as s:
        rule = _rule(s, "upsell")
        for n in range(8):
            c = add_customer(s, f"c{n}")
            held = n >= 4
            _message(s, rule, c, status=MessageStatus.HELD_OUT if held else MessageStatus.SENT)
            if n in (0, 1, 4):
                add_order(s, c, NOW + timedelta(days=3), 50)
    r = build_report(engine)[0]
    # Then the report shows 50% vs 25% conversion: +25 points of incremental lift
    assert (r.sent, r.held_out) == (4, 4)
    assert (r.treated_conversion_rate, r.control_conversion_rate) == (0.5, 0.25)
    assert r.lift == 25.0
    # and held-out customers' orders are never attributed revenue
    assert (r.conversions, r.revenue) == (2, Decimal("100"))


def test_a_rule_without_cost_has_no_roi(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = _rule(s, "free")
        _message(s, rule, add_customer(s, "ada"), cost="0")
    assert build_report(engine)[0].roi is None

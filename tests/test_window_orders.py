"""The pairs (measured message, order inside its window) the database keeps
in ``window_orders`` (migration 0020) stay exactly what the windows say, with
the columns they carry of both rows, whatever writes the messages and orders,
one row or many per statement, and two transactions at once (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from factories import NOW, add_customer, add_order
from outreach.domain import Channel, MessageStatus
from outreach.store.engine import transaction
from outreach.store.models import Message, Order, WindowOrder
from report_helpers import add_rule

DAY = timedelta(days=1)


CARRIED = (WindowOrder.rule_id, WindowOrder.variant, WindowOrder.held_out, WindowOrder.planned_at,
           WindowOrder.sent_at, WindowOrder.ordered_at, WindowOrder.amount, WindowOrder.currency, WindowOrder.source)


def _rows(engine: Engine) -> dict[tuple[int, int], tuple[object, ...]]:
    """(message, order) → what the pair carries, as stored."""
    with Session(engine) as s:
        return {(m, o): tuple(rest) for m, o, *rest in s.execute(
            select(WindowOrder.message_id, WindowOrder.order_id, *CARRIED))}


def _pairs(engine: Engine) -> set[tuple[int, int]]:
    return set(_rows(engine))


def _windows(engine: Engine) -> dict[tuple[int, int], tuple[object, ...]]:
    """The same pairs worked out in Python from every message and order (the
    report's definition), with what each should carry."""
    with Session(engine) as s:
        messages = s.execute(select(Message.id, Message.customer_id, Message.status, Message.planned_at,
                                    Message.sent_at, Message.attribute_until, Message.rule_id,
                                    Message.variant)).all()
        orders = s.execute(select(Order.id, Order.customer_id, Order.ordered_at, Order.amount, Order.currency,
                                  Order.source)).all()
    found = {}
    for mid, customer, status, planned, sent, until, rule, variant in messages:
        if status not in (MessageStatus.SENT, MessageStatus.HELD_OUT):
            continue
        held = status == MessageStatus.HELD_OUT
        start = planned if held else sent
        for oid, buyer, at, amount, currency, source in orders:
            if buyer == customer and start < at <= until:
                found[(mid, oid)] = (rule, variant, held, planned, sent, at, amount, currency, source)
    return found


def _message(s: Session, rule_id: int, customer_id: int, key: str, status: MessageStatus, *,
             planned: datetime = NOW, sent: datetime | None = None, until: datetime | None = None) -> int:
    row = Message(rule_id=rule_id, customer_id=customer_id, channel=Channel.EMAIL, occurrence_key=key,
                  status=status, planned_at=planned, sent_at=sent, attribute_until=until, attempts=0)
    s.add(row)
    s.flush()
    return row.id


def _exact(engine: Engine, expected: set[tuple[int, int]]) -> None:
    assert _rows(engine) == _windows(engine)
    assert _pairs(engine) == expected


def test_the_pairs_follow_every_write_of_messages_and_orders(engine: Engine) -> None:
    with transaction(engine) as s:
        rule = add_rule(s, "pairs").id
        ada, bob = add_customer(s, "ada"), add_customer(s, "bob")
        a, b = ada.id, bob.id
        # Orders before anything is sent, one of them inside the window a backdated send will have
        early = add_order(s, ada, NOW - 2 * DAY, 10).id
        add_order(s, ada, NOW - 20 * DAY, 10)  # before every window: never paired
        # A held-out row planned (its window starts at planned_at) and a planned one (not measured)
        held = _message(s, rule, b, "h", MessageStatus.HELD_OUT, planned=NOW, until=NOW + 7 * DAY)
        planned = _message(s, rule, a, "p", MessageStatus.PLANNED, planned=NOW)
        # A message sent (backdated) after orders exist in its window
        backdated = _message(s, rule, a, "b", MessageStatus.SENT, planned=NOW - 5 * DAY, sent=NOW - 5 * DAY,
                             until=NOW + 2 * DAY)
    _exact(engine, {(backdated, early)})

    # When orders arrive: one after the sends, one imported dated inside the older window, one of bob's
    with transaction(engine) as s:
        after = s.execute(insert(Order).returning(Order.id), [
            {"external_id": "after", "customer_id": a, "ordered_at": NOW + DAY, "amount": 5},
            {"external_id": "imported", "customer_id": a, "ordered_at": NOW - 4 * DAY, "amount": 6},
            {"external_id": "bob1", "customer_id": b, "ordered_at": NOW + 3 * DAY, "amount": 7},
            {"external_id": "bob-late", "customer_id": b, "ordered_at": NOW + 8 * DAY, "amount": 8},
        ]).scalars().all()
    after_id, imported, bob1, bob_late = after
    _exact(engine, {(backdated, early), (backdated, after_id), (backdated, imported), (held, bob1)})

    # When the planned message is claimed, then sent (a batch each, as the send path does)
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id.in_([planned, held])).values(status=MessageStatus.SENDING)
                  .where(Message.status == MessageStatus.PLANNED))
    _exact(engine, {(backdated, early), (backdated, after_id), (backdated, imported), (held, bob1)})
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id == planned).values(
            status=MessageStatus.SENT, sent_at=NOW + DAY / 2, attribute_until=NOW + 10 * DAY))
    _exact(engine, {(backdated, early), (backdated, after_id), (backdated, imported), (held, bob1),
                    (planned, after_id)})

    # When an order moves out of a window, another to the other customer, and a window is cut short
    with transaction(engine) as s:
        s.execute(update(Order).where(Order.id == imported).values(ordered_at=NOW - 9 * DAY))
        s.execute(update(Order).where(Order.id == bob_late).values(customer_id=a, ordered_at=NOW + 9 * DAY))
        s.execute(update(Message).where(Message.id == held).values(attribute_until=NOW + 2 * DAY))
    _exact(engine, {(backdated, early), (backdated, after_id), (planned, after_id), (planned, bob_late)})

    # When what a pair carries changes: an order's amount, currency and source (a re-import), a message's variant
    with transaction(engine) as s:
        s.execute(update(Order).where(Order.id == early).values(amount=99, currency="USD", source="webhook"))
        s.execute(update(Message).where(Message.id == backdated).values(variant="b"))
    _exact(engine, {(backdated, early), (backdated, after_id), (planned, after_id), (planned, bob_late)})
    assert _rows(engine)[(backdated, early)][1:] == ("b", False, NOW - 5 * DAY, NOW - 5 * DAY, NOW - 2 * DAY,
                                                     Decimal("99.00"), "USD", "webhook")

    # When a message, then an order, are deleted
    with transaction(engine) as s:
        s.execute(delete(Message).where(Message.id == backdated))
        s.execute(delete(Order).where(Order.id == after_id))
    _exact(engine, {(planned, bob_late)})
    # A message that stops being measured loses its pairs; an update of other columns keeps them
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id == planned).values(subject="changed"))
    _exact(engine, {(planned, bob_late)})
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id == planned).values(status=MessageStatus.FAILED))
    _exact(engine, set())


def _claimed(engine: Engine, name: str) -> tuple[int, int]:
    """A customer and a message of theirs claimed for sending (committed as ``sending``)."""
    with transaction(engine) as s:
        rule = add_rule(s, name).id
        customer = add_customer(s, name).id
        message = _message(s, rule, customer, "race", MessageStatus.SENDING, planned=NOW)
    return customer, message


def _finish(engine: Engine, message: int) -> None:
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id == message).values(
            status=MessageStatus.SENT, sent_at=NOW, attribute_until=NOW + 7 * DAY))


def _in_background(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.5)  # long enough for it to reach the trigger and wait, if it is going to
    return thread


def test_an_order_and_a_send_of_the_same_customer_written_at_once_are_still_paired(pg_engine: Engine) -> None:
    """Two transactions at once (PostgreSQL, READ COMMITTED): an order being
    written while a worker records its customer's message as sent, both ways
    round. Neither sees the other's uncommitted row; the later one waits for
    the earlier's commit (the triggers' advisory lock) and then pairs them."""
    customer, message = _claimed(pg_engine, "first")
    # The order's transaction first: the worker's finishing statement waits for its commit
    with pg_engine.connect() as shop:
        shop.execute(insert(Order).values(external_id="o1", customer_id=customer, ordered_at=NOW + DAY, amount=5))
        worker = _in_background(lambda: _finish(pg_engine, message))
        shop.commit()
    worker.join(10)
    assert _rows(pg_engine) == _windows(pg_engine)
    assert len(_pairs(pg_engine)) == 1

    customer, message = _claimed(pg_engine, "second")
    # The worker's transaction first: the order's statement waits for it
    with Session(pg_engine) as worker_session:
        worker_session.execute(update(Message).where(Message.id == message).values(
            status=MessageStatus.SENT, sent_at=NOW, attribute_until=NOW + 7 * DAY))

        def order() -> None:
            with transaction(pg_engine) as s:
                s.execute(insert(Order).values(external_id="o2", customer_id=customer, ordered_at=NOW + DAY,
                                               amount=6))
        shop = _in_background(order)
        worker_session.commit()
    shop.join(10)
    assert _rows(pg_engine) == _windows(pg_engine)
    assert len(_pairs(pg_engine)) == 2


def test_events_and_codes_carry_their_messages_rule_variant_and_plan_time(engine: Engine) -> None:
    """tracking_events and coupons keep copies of their message's rule (and
    variant, plan time) for the report (migration 0021): written with the
    row, changed with its message_id or with the message, emptied with it."""
    from outreach.store.models import Coupon, CouponPool, TrackingEvent

    with transaction(engine) as s:
        rule, other = add_rule(s, "keys").id, add_rule(s, "other").id
        ada = add_customer(s, "ada").id
        first = _message(s, rule, ada, "1", MessageStatus.SENT, planned=NOW, sent=NOW, until=NOW + DAY)
        second = _message(s, other, ada, "2", MessageStatus.SENT, planned=NOW + DAY, sent=NOW + DAY,
                          until=NOW + 2 * DAY)
        s.execute(update(Message).where(Message.id == first).values(variant="a"))
        s.add_all([TrackingEvent(type="open", message_id=first, occurred_at=NOW, source="t"),
                   TrackingEvent(type="open", message_id=None, occurred_at=NOW, source="t")])
        pool = CouponPool(name="p", created_at=NOW)
        s.add(pool)
        s.flush()
        s.add_all([Coupon(pool_id=pool.id, code="C1", source="generated", added_at=NOW),
                   Coupon(pool_id=pool.id, code="C2", source="generated", added_at=NOW)])

    def copies() -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
        with Session(engine) as s:
            return (set(s.execute(select(TrackingEvent.message_id, TrackingEvent.rule_id, TrackingEvent.planned_at))),
                    set(s.execute(select(Coupon.code, Coupon.rule_id, Coupon.variant, Coupon.planned_at))))

    assert copies() == ({(first, rule, NOW), (None, None, None)},
                        {("C1", None, None, None), ("C2", None, None, None)})
    # A code given to a message (as the send path gives it: an update of message_id)
    with transaction(engine) as s:
        s.execute(update(Coupon).where(Coupon.code == "C1").values(message_id=first, given_at=NOW))
        s.execute(update(Coupon).where(Coupon.code == "C2").values(message_id=second, given_at=NOW))
    assert copies()[1] == {("C1", rule, "a", NOW), ("C2", other, None, NOW + DAY)}
    # The message's variant and plan time change: the copies follow
    with transaction(engine) as s:
        s.execute(update(Message).where(Message.id == first).values(variant="b", planned_at=NOW - DAY))
    assert copies() == ({(first, rule, NOW - DAY), (None, None, None)},
                        {("C1", rule, "b", NOW - DAY), ("C2", other, None, NOW + DAY)})
    # The message is deleted: message_id is set NULL, and the copies go with it
    with transaction(engine) as s:
        s.execute(delete(Message).where(Message.id == first))
    assert copies() == ({(None, None, None)}, {("C1", None, None, None), ("C2", other, None, NOW + DAY)})

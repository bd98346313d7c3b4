"""Entry triggers — ``lifecycle`` (entering a lifecycle stage) and
``segment_entry`` (entering a segment, named ones and stats included): the
first evaluation records a baseline and messages nobody (unless nobody is in
yet), a customer who enters is messaged once, leaving and entering again is a
new occurrence, and entries older than ``max_age_days`` are ignored — through
real planning on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from factories import NOW, add_consent, add_customer, add_order, loaded_rule
from outreach.domain import MessageStatus
from outreach.planning.launch import plan_rule
from outreach.store.engine import transaction
from outreach.store.models import Customer, CustomerStats, CustomerTag
from policy_factories import customer_id, plan_run, rows_by_customer, rule, ruleset, stats_of
from trigger_helpers import DAY, MORNING, RULESET, messages, recipients

# ------------------------------------------------------------------ lifecycle trigger
AT_RISK = """
name: at-risk-care
trigger: {type: lifecycle, stage: at_risk, max_age_days: 7}
template: winback
channels: [email]
cooldown_days: 0
"""
#: Nobody becomes "active" (so leaving at_risk by ordering lands in steady).
NO_ACTIVE = {"lifecycle": {"active_orders": 10}}


def test_lifecycle_baseline_entry_and_reentry(engine: Engine) -> None:
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        already = add_customer(s, "already-at-risk")
        add_order(s, already, t0 - 400 * DAY)
        add_order(s, already, t0 - 100 * DAY)
        drifting = add_customer(s, "drifting")
        add_order(s, drifting, t0 - 400 * DAY)  # not "new": first order over 183 days ago
        add_order(s, drifting, t0 - 85 * DAY)

    # The first evaluation records the baseline: nobody is messaged
    assert recipients(engine, AT_RISK, t0, rs) == set()
    # Five days later drifting reaches 90 days without an order: entered, one message
    _, entered = plan_run(engine, rule(AT_RISK), t0 + 5 * DAY, rs)
    assert set(entered) == {"drifting"} and entered["drifting"].status is MessageStatus.QUEUED
    assert recipients(engine, AT_RISK, t0 + 6 * DAY, rs) == set()

    # Drifting orders (leaves the stage) and lapses again (re-enters): a new occurrence
    with transaction(engine) as s:
        add_order(s, drifting, t0 + 10 * DAY)
    assert recipients(engine, AT_RISK, t0 + 11 * DAY, rs) == set()
    assert recipients(engine, AT_RISK, t0 + 100 * DAY, rs) == {"drifting"}
    keys = [m.occurrence_key for m in rows_by_customer(engine)["drifting"]]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert "already-at-risk" not in rows_by_customer(engine)


def test_lifecycle_entries_older_than_max_age_are_ignored(engine: Engine) -> None:
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        baseline = add_customer(s, "baseline")  # the first evaluation is not empty
        add_order(s, baseline, t0 - 400 * DAY)
        add_order(s, baseline, t0 - 100 * DAY)
        soon = add_customer(s, "consents-soon", consent={})
        late = add_customer(s, "consents-late", consent={})
        for customer in (soon, late):
            add_order(s, customer, t0 - 400 * DAY)
            add_order(s, customer, t0 - 85 * DAY)
    assert recipients(engine, AT_RISK, t0, rs) == set()
    # Both enter at_risk on day 5 without consent: no message
    assert recipients(engine, AT_RISK, t0 + 5 * DAY, rs) == set()

    # One consents 3 days after entering, the other 8 days after
    with transaction(engine) as s:
        add_consent(s, soon, "email", "granted", at=t0 + 8 * DAY)
    assert recipients(engine, AT_RISK, t0 + 8 * DAY, rs) == {"consents-soon"}
    with transaction(engine) as s:
        add_consent(s, late, "email", "granted", at=t0 + 13 * DAY)
    assert recipients(engine, AT_RISK, t0 + 13 * DAY, rs) == set()


def test_lifecycle_entry_after_an_empty_first_evaluation_is_messaged(engine: Engine) -> None:
    # Given a shop where nobody is at risk yet when the rule first runs
    t0 = NOW
    rs = ruleset(NO_ACTIVE)
    with transaction(engine) as s:
        drifting = add_customer(s, "drifting")
        add_order(s, drifting, t0 - 400 * DAY)
        add_order(s, drifting, t0 - 85 * DAY)
    assert recipients(engine, AT_RISK, t0, rs) == set()

    # When the first customer enters the stage
    # Then they are messaged: they were not in the stage at the first evaluation
    assert recipients(engine, AT_RISK, t0 + 5 * DAY, rs) == {"drifting"}


def test_lifecycle_entry_messages_only_customers_who_enter(engine: Engine) -> None:
    text = ("name: welcome\ntrigger: {type: lifecycle, stage: new}\ntemplate: winback\n"
            "channels: [email]\ncooldown_days: 0\n")
    rule = loaded_rule(text)
    with transaction(engine) as s:
        old = add_customer(s, "already-new", consent={"email": "granted"})
        add_order(s, old, MORNING - timedelta(days=10))
    # The first evaluation records the baseline: nobody is messaged
    first, _ = plan_rule(engine, rule, now=MORNING, ruleset=RULESET)
    assert first.planned == 0
    # A customer who places a first order afterwards enters "new" and is messaged once
    with transaction(engine) as s:
        fresh = add_customer(s, "fresh", consent={"email": "granted"})
        add_order(s, fresh, MORNING + timedelta(hours=1))
    later = MORNING + timedelta(days=1)
    second, _ = plan_rule(engine, rule, now=later, ruleset=RULESET)
    third, _ = plan_rule(engine, rule, now=later + timedelta(hours=1), ruleset=RULESET)
    assert (second.planned, third.planned) == (1, 0)
    assert [m[1] for m in messages(engine)] == ["fresh"]
    with Session(engine) as s:
        assert s.scalar(select(CustomerStats.lifecycle_stage).where(CustomerStats.customer_id == fresh.id)) == "new"


# ------------------------------------------------------------------ segment_entry trigger
BECAME_VIP = """
name: became-vip
trigger:
  type: segment_entry
  enters: {tag: vip}
template: winback
channels: [email]
cooldown_days: 0
"""


def set_tag(engine: Engine, ext: str, tag: str, present: bool) -> None:
    with transaction(engine) as s:
        cid = customer_id(engine, ext)
        if present:
            s.add(CustomerTag(customer_id=cid, tag=tag))
        else:
            s.execute(delete(CustomerTag).where(CustomerTag.customer_id == cid, CustomerTag.tag == tag))


def test_segment_entry_baseline_entry_and_reentry(engine: Engine) -> None:
    with transaction(engine) as s:
        add_customer(s, "old-vip", tags=["vip"])
        add_customer(s, "ada")

    assert recipients(engine, BECAME_VIP, NOW) == set()  # baseline

    set_tag(engine, "ada", "vip", True)
    assert recipients(engine, BECAME_VIP, NOW + 1 * DAY) == {"ada"}
    assert recipients(engine, BECAME_VIP, NOW + 2 * DAY) == set()

    set_tag(engine, "ada", "vip", False)
    assert recipients(engine, BECAME_VIP, NOW + 3 * DAY) == set()
    set_tag(engine, "ada", "vip", True)
    assert recipients(engine, BECAME_VIP, NOW + 4 * DAY) == {"ada"}

    messages = rows_by_customer(engine)
    assert set(messages) == {"ada"} and len({m.occurrence_key for m in messages["ada"]}) == 2


def test_segment_entry_on_stats_through_named_segments(engine: Engine) -> None:
    # Given five buyers; the best (top 20%) is the VIP
    rs = ruleset(segments={"vip": {"stats": {"value_tier": "vip"}}})
    text = """
name: welcome-vip
trigger: {type: segment_entry, enters: {segment: vip}, max_age_days: 3}
template: winback
channels: [email]
"""
    with transaction(engine) as s:
        for n in range(1, 6):
            add_order(s, add_customer(s, f"c{n}"), NOW - 30 * DAY, n * 100)
    assert recipients(engine, text, NOW, rs) == set()  # c5 is the baseline VIP

    # When c1 places a large order and overtakes everyone
    with transaction(engine) as s:
        c1 = s.scalar(select(Customer).where(Customer.external_id == "c1"))
        add_order(s, c1, NOW + 1 * DAY, 5000)

    # Then c1 entered the VIP segment and is welcomed, once
    assert recipients(engine, text, NOW + 2 * DAY, rs) == {"c1"}
    assert recipients(engine, text, NOW + 3 * DAY, rs) == set()
    assert stats_of(engine)["c5"].value_tier == "regular"

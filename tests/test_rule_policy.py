"""Cross-rule policy and the inspection commands, as a marketer sees them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from factories import add_consent, add_customer, add_order, loaded_rule
from outreach.domain import Channel, ConsentStatus, MessageStatus
from outreach.planning.explain import explain
from outreach.planning.launch import launch, plan_rule
from outreach.planning.preview import preview
from outreach.planning.schedule import due
from outreach.rules import RuleSet
from outreach.rules.policy import LifecyclePolicy, Policy
from outreach.store.engine import transaction
from outreach.store.models import CustomerStats, Membership, Message

REPO = Path(__file__).resolve().parents[1]
# 02:00 UTC = 10:00 in Shanghai, 21:00 (previous day) in New York.
NOW = datetime(2026, 6, 1, 2, 0)
POLICY = Policy.model_validate({
    "frequency_cap": {"max_messages": 1, "days": 7},
    "send_windows": {"sms": {"start": "09:00", "end": "20:00"}},
})
RULESET = RuleSet(policy=POLICY)


def rule_text(name: str, *, priority: int, channels: str = "[email]", holdout: int = 0) -> str:
    return (f"name: {name}\ntrigger: {{type: inactivity, days: 30}}\ntemplate: winback\n"
            f"channels: {channels}\npriority: {priority}\nholdout_percent: {holdout}\ncooldown_days: 0\n")


def messages(engine: Engine) -> list[tuple[str, int, str, str]]:
    from outreach.store.models import Customer, Rule

    with Session(engine) as s:
        rows = s.execute(select(Rule.name, Customer.external_id, Message.channel, Message.status)
                         .join(Rule, Rule.id == Message.rule_id)
                         .join(Customer, Customer.id == Message.customer_id)
                         .order_by(Customer.external_id, Rule.name)).all()
    return [(r, c, ch.value, st.value) for r, c, ch, st in rows]


def lapsed(session: Session, ext: str, **kwargs: object):  # type: ignore[no-untyped-def]
    customer = add_customer(session, ext, **kwargs)
    add_order(session, customer, NOW - timedelta(days=40))
    return customer


def settings_for(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    from outreach.config import load_settings

    return load_settings(database_url=db_url, broker_url="memory://", outbox_dir=tmp_path / "outbox",
                         templates_dir=REPO / "templates", secret_key="t")


def test_frequency_cap_keeps_the_higher_priority_rule(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given one lapsed customer whom two rules want to message, and a cap of 1 per week
    with transaction(engine) as s:
        lapsed(s, "ada", consent={"email": "granted"})
    low, high = loaded_rule(rule_text("low", priority=1)), loaded_rule(rule_text("high", priority=9))
    # When both run together (in any order in the list)
    launch(settings_for(tmp_path, db_url), engine, [low, high], now=NOW, simulated=True, ruleset=RULESET)
    # Then only the important one reaches her
    assert messages(engine) == [("high", "ada", "email", "sent")]


def test_sms_outside_the_local_window_is_deferred_then_sent(engine: Engine, db_url: str, tmp_path: Path) -> None:
    # Given a New York customer (21:00 local) and a Shanghai one (10:00 local), SMS only
    with transaction(engine) as s:
        lapsed(s, "ny", tz="America/New_York", email=None, consent={"sms": "granted"})
        lapsed(s, "sh", tz="Asia/Shanghai", email=None, consent={"sms": "granted"})
    settings = settings_for(tmp_path, db_url)
    rule = loaded_rule(rule_text("sms-only", priority=1, channels="[sms]"))
    launch(settings, engine, [rule], now=NOW, simulated=True, ruleset=RULESET)
    # Then Shanghai gets it now; New York waits for 09:00 local (13:00 UTC), not dropped
    assert messages(engine) == [("sms-only", "ny", "sms", "planned"), ("sms-only", "sh", "sms", "sent")]
    with Session(engine) as s:
        assert s.scalar(select(Message.not_before).where(Message.status == MessageStatus.PLANNED)) == \
            datetime(2026, 6, 1, 13, 0)
    # When a run happens before the window opens, nothing changes; after it, it is sent
    launch(settings, engine, [], now=datetime(2026, 6, 1, 12, 59), simulated=True, ruleset=RULESET)
    assert messages(engine)[0][3] == "planned"
    launch(settings, engine, [], now=datetime(2026, 6, 1, 13, 0), simulated=True, ruleset=RULESET)
    assert [m[3] for m in messages(engine)] == ["sent", "sent"]
    assert len((tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()) == 2


def test_explain_and_preview_agree_with_what_planning_writes(engine: Engine) -> None:
    # Given customers in every situation a rule meets
    with transaction(engine) as s:
        lapsed(s, "ok", consent={"email": "granted"})
        lapsed(s, "no-consent", consent={})
        revoked = lapsed(s, "revoked", consent={"email": "granted"})
        add_consent(s, revoked, Channel.EMAIL, ConsentStatus.REVOKED, at=NOW - timedelta(days=1))
        lapsed(s, "sms-fallback", email=None, tz="Asia/Shanghai", consent={"sms": "granted"})
        lapsed(s, "deferred", email=None, tz="America/New_York", consent={"sms": "granted"})
        add_customer(s, "recent-buyer", consent={"email": "granted"})
        for n in range(30):
            lapsed(s, f"bulk{n:02d}", consent={"email": "granted"})
    rule = loaded_rule(rule_text("r", priority=1, channels="[email, sms]", holdout=20))
    # When explain and preview look first (changing nothing) …
    ext_ids = ["ok", "no-consent", "revoked", "sms-fallback", "deferred", "recent-buyer",
               *[f"bulk{n:02d}" for n in range(30)]]
    said = {ext: explain(engine, rule, customer=ext, now=NOW, ruleset=RULESET) for ext in ext_ids}
    before = preview(engine, rule, now=NOW, ruleset=RULESET)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0
        assert s.scalar(select(func.count()).select_from(Membership)) == 0
    # … and then the rule is planned
    plan_rule(engine, rule, now=NOW, ruleset=RULESET)
    written = {c: (ch, st) for _, c, ch, st in messages(engine)}
    # Then every explanation matches the row planning wrote (or its absence)
    for ext, e in said.items():
        if ext not in written:
            assert not e.would_send and "held out" not in e.decision, (ext, e.decision)
        elif written[ext][1] == "held_out":
            assert "held out" in e.decision, (ext, e.decision)
        else:
            assert e.would_send and e.channel == written[ext][0], (ext, e.decision, written[ext])
            assert ("deferred" in e.decision) == (written[ext][1] == "planned"), (ext, e.decision)
    assert "no permitted channel" in said["no-consent"].decision
    assert "not triggered" in said["recent-buyer"].decision
    # And the preview's numbers are the rows planning wrote
    statuses = [st for _, st in written.values()]
    assert before.held_out == statuses.count("held_out")
    assert before.would_send == len(statuses) - before.held_out
    assert before.deferred == statuses.count("planned")
    assert before.no_consent == 2 and before.matched == 35


def test_a_scheduled_rule_is_due_once_per_cron_time(engine: Engine) -> None:
    text = rule_text("daily", priority=1) + 'schedule: "0 9 * * *"\n'
    rule = loaded_rule(text)
    assert due(engine, [rule], now=datetime(2026, 6, 1, 8, 0)) == [rule]  # never run: due
    plan_rule(engine, rule, now=datetime(2026, 6, 1, 8, 0))
    assert due(engine, [rule], now=datetime(2026, 6, 1, 8, 59)) == []
    assert due(engine, [rule], now=datetime(2026, 6, 1, 9, 1)) == [rule]
    disabled = loaded_rule(text.replace("name: daily", "name: paused") + "enabled: false\n")
    assert due(engine, [disabled], now=datetime(2026, 6, 1, 9, 1)) == []


def test_lifecycle_entry_messages_only_customers_who_enter(engine: Engine) -> None:
    text = ("name: welcome\ntrigger: {type: lifecycle, stage: new}\ntemplate: winback\n"
            "channels: [email]\ncooldown_days: 0\n")
    rule = loaded_rule(text)
    with transaction(engine) as s:
        old = add_customer(s, "already-new", consent={"email": "granted"})
        add_order(s, old, NOW - timedelta(days=10))
    # The first evaluation records the baseline: nobody is messaged
    first, _ = plan_rule(engine, rule, now=NOW, ruleset=RULESET)
    assert first.planned == 0
    # A customer who places a first order afterwards enters "new" and is messaged once
    with transaction(engine) as s:
        fresh = add_customer(s, "fresh", consent={"email": "granted"})
        add_order(s, fresh, NOW + timedelta(hours=1))
    later = NOW + timedelta(days=1)
    second, _ = plan_rule(engine, rule, now=later, ruleset=RULESET)
    third, _ = plan_rule(engine, rule, now=later + timedelta(hours=1), ruleset=RULESET)
    assert (second.planned, third.planned) == (1, 0)
    assert [m[1] for m in messages(engine)] == ["fresh"]
    with Session(engine) as s:
        assert s.scalar(select(CustomerStats.lifecycle_stage).where(CustomerStats.customer_id == fresh.id)) == "new"


def test_lifecycle_stages_follow_the_documented_thresholds(engine: Engine) -> None:
    from outreach.store import stats

    # Given one customer per stage (thresholds: new 183 d, active 2 orders/365 d,
    # at_risk 90 d, inactive 183 d, win_back: ordered in 30 d after 183 d of silence)
    with transaction(engine) as s:
        add_customer(s, "prospect")
        add_order(s, add_customer(s, "new"), NOW - timedelta(days=20))
        active = add_customer(s, "active", created_at=NOW - timedelta(days=900))
        for days in (400, 200, 100):
            add_order(s, active, NOW - timedelta(days=days))
        at_risk = add_customer(s, "at_risk")
        for days in (600, 120):
            add_order(s, at_risk, NOW - timedelta(days=days))
        add_order(s, add_customer(s, "inactive"), NOW - timedelta(days=300))
        back = add_customer(s, "win_back")
        for days in (500, 10):
            add_order(s, back, NOW - timedelta(days=days))
    with transaction(engine) as s:
        stats.refresh(s, now=NOW)
    from outreach.store.models import Customer

    with Session(engine) as s:
        stages = dict(s.execute(select(Customer.external_id, CustomerStats.lifecycle_stage)
                                .join(CustomerStats, CustomerStats.customer_id == Customer.id)).all())
    assert stages == {name: name for name in ("prospect", "new", "active", "at_risk", "inactive", "win_back")}


def test_win_back_needs_the_whole_silence_without_an_order(engine: Engine) -> None:
    from outreach.store import stats
    from outreach.store.models import Customer

    # Silence: (now − 30 − inactive_days, now − 30]; an order in it, even on
    # its last day, means the customer never lapsed. A silence reaching past
    # 12 months (inactive_days 400) is checked as far back as it goes.
    histories = {
        "back": (700, 10),
        "ordered-in-silence": (700, 390, 10),
        "ordered-on-last-silent-day": (700, 30, 10),
        "ordered-just-before-silence": (700, 431, 10),
    }
    with transaction(engine) as s:
        for name, days_ago in histories.items():
            c = add_customer(s, name)
            for days in days_ago:
                add_order(s, c, NOW - timedelta(days=days))
    with transaction(engine) as s:
        stats.refresh(s, now=NOW, thresholds=stats.LifecycleThresholds(inactive_days=400))
    with Session(engine) as s:
        back = set(s.scalars(select(Customer.external_id).join(CustomerStats, CustomerStats.customer_id == Customer.id)
                             .where(CustomerStats.lifecycle_stage == "win_back")))
    assert back == {"back", "ordered-just-before-silence"}


def test_changed_lifecycle_thresholds_recompute_stats_for_the_same_moment(engine: Engine) -> None:
    # Given a customer whose last order was 100 days ago
    with transaction(engine) as s:
        c = add_customer(s, "lapsing")
        add_order(s, c, NOW - timedelta(days=400))
        add_order(s, c, NOW - timedelta(days=100))
    rule = loaded_rule(
        "name: at-risk\ntrigger: {type: lifecycle, stage: at_risk}\ntemplate: winback\nchannels: [email]\n"
    )

    def stage(at_risk_days: int) -> str:
        ruleset = RuleSet(policy=Policy(lifecycle=LifecyclePolicy(at_risk_days=at_risk_days)))
        with transaction(engine) as s:
            from outreach.planning.prepare import prepare

            prepare(s, [rule.spec], now=NOW, ruleset=ruleset)
        with Session(engine) as s:
            return s.scalar(select(CustomerStats.lifecycle_stage))

    # When the marketer moves "at risk" from 90 to 120 days, for the same moment
    assert stage(90) == "at_risk"
    # Then the stats are computed again, not reused
    assert stage(120) == "steady"
    assert stage(90) == "at_risk"

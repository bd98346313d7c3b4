"""The store: the data model and every SQL statement the engine runs.

    models.py       the tables (SQLAlchemy 2.x, typed), naive UTC everywhere
    engine.py       engines, transactions, migrations (Alembic, ``migrations/``)
    dialect.py      everything that differs between PostgreSQL and SQLite
    segments.py     segment conditions → one SQL boolean over customers
    triggers.py     triggers → one SELECT (customer, occurrence) each
    totals.py       per-customer order totals "as of" a moment
    stats.py        RFM scores, value tier, lifecycle stage (set-based refresh)
    memberships.py  who entered a segment or lifecycle stage, since when
    permission.py   consent, addresses and suppressions (planning and send time)
    holdout.py      the deterministic control group
    eligibility.py  who is eligible for a rule now (one SELECT)
    outbox.py       planned messages and their states (plan, queue, claim, finish)
    responses.py    the only writer of tracking events and the consent changes they cause
"""

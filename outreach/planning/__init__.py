"""Planning: turn rules into queued messages, and say what a rule would do.

    prepare.py   refresh the per-customer aggregates and memberships rules read
    launch.py    plan rules and hand their messages to the broker
    schedule.py  when rules are due (``outreach run``) and ``outreach scheduler``
    preview.py   ``rules preview``: counts and a sample, changing nothing
    explain.py   ``rules explain``: one customer, condition by condition
    warnings.py  checks of rules against today's data (``rules validate``)
"""

"""Sending: from a queued outbox row to a delivered message, exactly once.

    queue.py    the Dramatiq actor, enqueueing, the in-process drain
    deliver.py  claim → re-check permission → render → deliver → record
    render.py   Jinja (sandboxed) → MJML → HTML, tracked links, locale variants
    tokens.py   signed unsubscribe, click and open links
    worker.py   the module ``outreach worker`` runs under ``dramatiq``
"""

"""Entry module for ``dramatiq outreach.worker`` (what ``outreach worker`` runs).

Importing it creates the broker from the OUTREACH_* settings and declares
the delivery actor on it.
"""

from __future__ import annotations

from outreach import tasks
from outreach.config import get_settings

broker = tasks.setup(get_settings()).broker

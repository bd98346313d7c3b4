"""Entry module for ``dramatiq outreach.worker`` (what ``outreach worker`` runs).

Importing it creates the broker from the OUTREACH_* settings and declares
the delivery actor on it.
"""

from __future__ import annotations

from outreach.sending import queue
from outreach.config import get_settings

_settings = get_settings()
# Fail at boot, loudly, rather than on every message: production needs a secret.
_settings.require_secret()
broker = queue.setup(_settings).broker

"""Entry module for ``dramatiq outreach.sending.worker`` (what ``outreach worker`` runs).

Importing it, in each worker process, resolves the OUTREACH_* settings,
sets up logging, checks that the configured channels exist and that a
secret is set — failing at boot, loudly, rather than on every message —
then creates the broker and declares the delivery actor on it.
"""

from __future__ import annotations

from outreach import logs
from outreach.channels import check_settings
from outreach.config import get_settings
from outreach.sending import queue

_settings = get_settings()
logs.configure(level=_settings.log_level or "info", fmt=_settings.log_format)
check_settings(_settings)
_settings.require_secret()
broker = queue.setup(_settings).broker

"""ESP feeds: what email service providers report about our mail.

    ses.py       /webhooks/esp/ses       Amazon SES through SNS (signed by Amazon)
    sendgrid.py  /webhooks/esp/sendgrid  SendGrid's Signed Event Webhook (ECDSA)
    mailgun.py   /webhooks/esp/mailgun   Mailgun (HMAC of timestamp + token)
    postmark.py  /webhooks/esp/postmark  Postmark (HTTP basic auth)

Each route exists only when its provider's setting is configured. They share
one pipeline (:mod:`.base`) and one store (:mod:`outreach.store.feedback`):
hard bounces and complaints suppress the address, a complaint or an
unsubscribe revokes consent, enough soft bounces in a row suppress.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from starlette.routing import Route

from outreach.config import Settings
from outreach.webhooks.esp import mailgun, postmark, sendgrid, ses

#: One module per ESP, each (settings, engine, clock) → its routes.
FEEDS = (ses.routes, sendgrid.routes, mailgun.routes, postmark.routes)


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    return [route for feed in FEEDS for route in feed(settings, engine, clock)]

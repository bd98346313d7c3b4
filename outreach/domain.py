"""The words of the domain, shared by every layer (no database, no I/O).

Channels, customer types, consent and message states, topics, the normalized
response vocabulary, lifecycle stages, RFM group names and value tiers —
what a marketer writes in a rule and reads in a report. The rule language
validates against these names; the store maps them to columns; the report
prints them. Nothing here imports anything of Outreach.
"""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class CustomerType(enum.StrEnum):
    RETAIL = "retail"
    BUSINESS = "business"
    DISTRIBUTOR = "distributor"


class ConsentStatus(enum.StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"


class Topic(enum.StrEnum):
    """What a marketing message is about (a rule's ``topic:``). A customer
    may turn each topic off on their preference page; transactional rules
    have none. Adding one: a member here and its name on the page
    (``outreach.webhooks.preference_pages``)."""

    #: Discounts, recommendations (cross-sell, up-sell), win-back, cart reminders.
    OFFERS = "offers"
    #: Care messages: birthdays, anniversaries, a personal note after a while.
    CARE = "care"
    #: New harvests, new products, the newsletter.
    NEWS = "news"
    #: Surveys: how did we do (NPS, satisfaction).
    FEEDBACK = "feedback"


class MessageStatus(enum.StrEnum):
    """Explicit states of an outbox row.

    planned → queued → sending → sent
                          ↘ skipped (consent/suppression re-check failed)
                          ↘ failed  (permanent error or retries exhausted)
    held_out: control group, recorded but never sent.
    """

    PLANNED = "planned"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    HELD_OUT = "held_out"


class EventType(enum.StrEnum):
    """Normalized response vocabulary; what a source does not know becomes UNKNOWN."""

    DELIVERED = "delivered"
    #: The receiving server said "not now"; the ESP keeps trying.
    DEFERRED = "deferred"
    OPEN = "open"
    CLICK = "click"
    REPLY = "reply"
    #: A permanent (hard) bounce: the address does not exist or refuses for good.
    BOUNCE = "bounce"
    #: A temporary bounce (mailbox full, blocked for now); enough in a row suppress.
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    STOP = "stop"
    FAILED = "failed"
    ORDER = "order"
    UNKNOWN = "unknown"


#: Lifecycle stages (DOMAIN.md), in the order the refresh tests them.
LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "inactive", "win_back", "steady")
#: Named RFM groups, in the order the refresh assigns them (first match wins).
RFM_GROUP_NAMES = (
    "champions", "at_risk", "loyal", "new", "hibernating", "promising", "needs_attention",
)
#: Value tiers: the top 20% of buyers by revenue are ``vip`` (the 80/20 rule).
VALUE_TIERS = ("vip", "regular")

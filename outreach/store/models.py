"""The data model (SQLAlchemy 2.x, typed); the domain's words come from ``outreach.domain``.
All timestamps are stored as *naive UTC* so SQLite and PostgreSQL compare them
the same way; ``outreach.clock`` converts at the edges."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.domain import Channel, ConsentStatus, CustomerType, EventType, MessageStatus
from outreach.store.answers import SurveyAnswer as SurveyAnswer
from outreach.store.base import Base as Base
from outreach.store.base import BigId, enum_column
from outreach.store.coupon_rows import Coupon as Coupon
from outreach.store.coupon_rows import CouponPool as CouponPool
from outreach.store.coupon_rows import CouponRedemption as CouponRedemption
from outreach.store.decision_rows import VariantDecision as VariantDecision
from outreach.store.erased import ErasedAddress as ErasedAddress
from outreach.store.erased import Erasure as Erasure
from outreach.store.membership_rows import Membership as Membership
from outreach.store.preference_rows import ConsentConfirmation as ConsentConfirmation
from outreach.store.preference_rows import MarketingPause as MarketingPause
from outreach.store.preference_rows import PreferenceRecord as PreferenceRecord
from outreach.store.preference_rows import TopicOptOut as TopicOptOut
from outreach.store.webhook_tokens import WebhookToken as WebhookToken
from outreach.store.window_rows import WindowOrder as WindowOrder
from outreach.store.worker_rows import Worker as Worker


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    # Derived from birthday so birthday triggers are plain indexed SQL.
    birth_month: Mapped[int | None] = mapped_column(SmallInteger)
    birth_day: Mapped[int | None] = mapped_column(SmallInteger)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    customer_type: Mapped[CustomerType] = mapped_column(
        enum_column(CustomerType, "customer_type"), default=CustomerType.RETAIL
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    tags: Mapped[list[CustomerTag]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (Index("ix_customers_birth_md", "birth_month", "birth_day"),)


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_customer_tags_tag", "tag"),)


class ConsentRecord(Base):
    """The consent ledger: append-only; the latest row per channel wins."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE")
    )
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    status: Mapped[ConsentStatus] = mapped_column(enum_column(ConsentStatus, "consent_status"))
    source: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_consents_customer_channel", "customer_id", "channel", "recorded_at"),
    )


class CurrentConsent(Base):
    """The latest ledger row of each (customer, channel): its status, when it
    was recorded and which row it is. Kept by database triggers on
    ``consents`` (migration 0004), whoever writes, so planning joins one row
    per channel instead of searching the ledger. No consent ever: no row."""

    __tablename__ = "current_consents"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"), primary_key=True)
    status: Mapped[ConsentStatus] = mapped_column(enum_column(ConsentStatus, "consent_status"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime)
    consent_id: Mapped[int] = mapped_column(BigId)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    ordered_at: Mapped[datetime] = mapped_column(DateTime)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    discount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # given on it, as the shop says (0016)
    source: Mapped[str] = mapped_column(String(32), default="import")
    #: The signed time of the webhook delivery stored (None: imported); an
    #: older delivery, replayed after an update, changes nothing (0011).
    reported_at: Mapped[datetime | None] = mapped_column(DateTime)

    items: Mapped[list[OrderItem]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (
        Index("ix_orders_customer_time", "customer_id", "ordered_at", "amount", "currency"),  # covering (0008, 0018)
        # Windowed triggers (upsell, event follow-ups) range-scan recent orders;
        # windowed aggregates by customer (RFM) read only the index (0006).
        Index("ix_orders_time", "ordered_at", "customer_id", "amount", "id"),
        Index("ix_orders_coupon", "coupon_code"),
    )


class OrderTotals(Base):
    """Each customer's all-time order count, revenue, first and last order,
    kept current by the database itself (triggers on ``orders``, migration
    0002, whoever writes): rules read one narrow row per customer instead of
    aggregating every order. A customer without orders has no row."""

    __tablename__ = "order_totals"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    order_count: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    first_order_at: Mapped[datetime] = mapped_column(DateTime)
    last_order_at: Mapped[datetime] = mapped_column(DateTime)

    # Inactivity reads a range of last orders; "as of" an earlier moment needs
    # the few customers whose last order is after it.
    __table_args__ = (Index("ix_order_totals_last", "last_order_at"),)


class CustomerProduct(Base):
    """What each customer ever bought: one row per (customer, SKU, category)
    with the first and last time, kept current by database triggers on
    ``orders`` and ``order_items`` (migration 0003), so "never bought X" reads
    a customer's few rows instead of every order line. No category is ''."""

    __tablename__ = "customer_products"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_bought_at: Mapped[datetime] = mapped_column(DateTime)
    last_bought_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_customer_products_category", "category", "customer_id", "first_bought_at"),
        Index("ix_customer_products_sku", "sku", "customer_id", "first_bought_at"),
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))

    __table_args__ = (
        Index("ix_order_items_order", "order_id", "sku", "category", "quantity", "amount"),
        Index("ix_order_items_sku", "sku"),
        Index("ix_order_items_category", "category"),
    )


class CustomEvent(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_events_customer_name", "customer_id", "name", "occurred_at"),
        Index("ix_events_name_time", "name", "occurred_at"),
    )


class Rule(Base):
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(String(512))
    definition: Mapped[dict[str, Any]] = mapped_column()
    checksum: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    #: The send path's view of the rule (synced from the file, or set by
    #: ``campaign pause``): a disabled or paused rule's messages are not sent.
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    paused_at: Mapped[datetime | None] = mapped_column(DateTime)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    #: Own queue, ahead of marketing; exempt from the frequency cap.
    transactional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: What its messages are about (``domain.Topic``): customers who turned it off get none (0015).
    topic: Mapped[str | None] = mapped_column(String(32))
    #: How its control group and variants are drawn (``store.holdout``): ``sha256`` for rules new
    #: since 0016; rules that existed keep ``legacy`` until ``campaign regroup`` (0016).
    assignment: Mapped[str] = mapped_column(String(16), default="sha256", server_default="legacy")


class CampaignRun(Base):
    __tablename__ = "campaign_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"))
    as_of: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    held_out: Mapped[int] = mapped_column(Integer, default=0)


class Message(Base):
    """The outbox. One row per (rule, customer, occurrence): a second send of
    the same occurrence violates ``uq_messages_occurrence``."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Rule and run are checked by database triggers once per statement, not
    #: by per-row foreign keys (migration 0005); deleting a rule or run that
    #: messages refer to is refused.
    rule_id: Mapped[int] = mapped_column(BigId)
    run_id: Mapped[int | None] = mapped_column(BigId)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    occurrence_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[MessageStatus] = mapped_column(enum_column(MessageStatus, "message_status"))
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(512))
    planned_at: Mapped[datetime] = mapped_column(DateTime)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[Decimal] = mapped_column(Numeric(10, 4), default=Decimal("0"))
    #: Orders up to this time count (send or, held out, plan time + the rule's window; pairs: 0020).
    attribute_until: Mapped[datetime | None] = mapped_column(DateTime)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    #: Quiet hours: not to be queued before this time (naive UTC); NULL = now.
    not_before: Mapped[datetime | None] = mapped_column(DateTime)
    #: The worker that moved it to ``sending`` (compare-and-set on it when finishing).
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    #: Taken back from a worker that stopped mid-send: it may have been delivered twice.
    redelivered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The rule's A/B variant this customer got (its template is rendered); NULL: no variants, or held out.
    variant: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("rule_id", "customer_id", "occurrence_key", name="uq_messages_occurrence"),
        # Queue maintenance: messages of a status, deferred ones by when they are due.
        Index("ix_messages_status", "status", "not_before"),
        Index("ix_messages_run_status", "run_id", "status"),
        # Frequency caps and attribution look messages up by customer; the cooldown and cap
        # counts (0007) and the report's windows, in customer order (0018), read only this index.
        Index("ix_messages_customer_planned", "customer_id", "planned_at", "rule_id", "status", "channel",
              "sent_at", "attribute_until", "variant"),
        # Delivery-status webhooks find the message by the provider's id.
        Index("ix_messages_provider", "provider_id", postgresql_where=text("provider_id IS NOT NULL"),
              sqlite_where=text("provider_id IS NOT NULL")),
    )


class TrackingEvent(Base):
    """Every response, normalized: opens, clicks, unsubscribes, STOPs, orders…"""

    __tablename__ = "tracking_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[EventType] = mapped_column(enum_column(EventType, "event_type"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[str] = mapped_column(String(32))
    #: Sender-supplied identity of the event, so a retried webhook stores once.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    url: Mapped[str | None] = mapped_column(Text)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The message's rule and plan time, copied by triggers (0021) for the report; NULL without a message.
    rule_id: Mapped[int | None] = mapped_column(BigId)
    planned_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_tracking_message_type", "message_id", "type"),
        Index("ix_tracking_customer", "customer_id"),
    )


class Suppression(Base):
    """Addresses that must never be contacted on a channel again."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("channel", "address", name="uq_suppressions_address"),)


class CustomerStats(Base):
    """Per-customer order aggregates, RFM scores, value tier and lifecycle
    stage, refreshed set-based as of a moment (``as_of``) before rules run."""

    __tablename__ = "customer_stats"

    # No foreign key: a derived cache, rebuilt whole by every refresh (checking
    # a million keys cost more than building the rows), and UNLOGGED on
    # PostgreSQL (migration 0002) — after a crash it is empty and rebuilt.
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    as_of: Mapped[datetime] = mapped_column(DateTime)
    #: The lifecycle thresholds used (``stats.fingerprint``).
    params: Mapped[str] = mapped_column(String(256))
    order_count: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime)
    orders_12m: Mapped[int] = mapped_column(Integer)
    revenue_12m: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(24))
    value_tier: Mapped[str] = mapped_column(String(16))
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    clv: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))

    __table_args__ = (
        Index("ix_customer_stats_rfm", "rfm_segment"),
        Index("ix_customer_stats_stage", "lifecycle_stage"),
    )

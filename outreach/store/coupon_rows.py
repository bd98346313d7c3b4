"""The tables of offers (re-exported by :mod:`outreach.store.models`; the
functions that use them: ``outreach.store.coupons`` and ``outreach.store.redemptions``).

``coupon_pools`` names each pool; ``coupons`` holds every code, unique across
all pools, and — once it is given — the one message it went to (unique: a
message has one code, a code one message), when, until when it is good, and
the offer's terms at that moment; ``coupon_redemptions`` records each order
that carried a given code: the first (earliest) one is the redemption, any
later one a ``duplicate`` use, with the revenue and the discount each brought.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Numeric, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.store.base import Base, BigId


class CouponPool(Base):
    """A named pool of codes (``offer: {pool: …}`` in a rule)."""

    __tablename__ = "coupon_pools"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Coupon(Base):
    """One code: free until it is given to a message (``given_at``), then that message's for good."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("coupon_pools.id"))
    #: Capitals (codes are compared without regard to case, as shops do).
    code: Mapped[str] = mapped_column(String(64))
    #: ``generated`` or ``imported``.
    source: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(DateTime)
    #: The last day the code is good for: the code's own (imported, or
    #: ``--expires``), and once given the earlier of that and the offer's terms.
    expires_on: Mapped[date | None] = mapped_column(Date)
    #: The message it was given to (SET NULL only if that message is deleted:
    #: ``given_at`` keeps the code from being given again).
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    given_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: The offer's discount when it was given: a percentage, or an amount in ``currency``.
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    amount_off: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    #: Copies of the message's rule, A/B variant and plan time, kept by triggers (0021): the report counts codes
    #: given per rule and variant without joining the messages. NULL without a message.
    rule_id: Mapped[int | None] = mapped_column(BigId)
    variant: Mapped[str | None] = mapped_column(String(64))
    planned_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("code", name="uq_coupons_code"),
        UniqueConstraint("message_id", name="uq_coupons_message_id"),
        # Giving codes reads a pool's free codes in order, and only those.
        Index("ix_coupons_free", "pool_id", "id", postgresql_where=text("given_at IS NULL"),
              sqlite_where=text("given_at IS NULL")),
    )


class CouponRedemption(Base):
    """An order that carried a given code, dated no earlier than the code was given."""

    __tablename__ = "coupon_redemptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id", ondelete="CASCADE"))
    #: One code per order (an order carries one ``coupon_code``).
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    #: The message the code was given to: the exact attribution.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    ordered_at: Mapped[datetime] = mapped_column(DateTime)
    #: The order's amount and currency (the revenue it brought).
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    #: The discount given: the order's own figure, else computed from the offer's terms.
    discount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    discount_currency: Mapped[str] = mapped_column(String(3))
    #: ``order`` (the shop said) or ``offer`` (from the terms).
    discount_source: Mapped[str] = mapped_column(String(8))
    #: A later order with a code already redeemed: a use, not a second conversion.
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    recorded_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("order_id", name="uq_coupon_redemptions_order_id"),
        Index("ix_coupon_redemptions_coupon", "coupon_id", "ordered_at", "order_id"),
        Index("ix_coupon_redemptions_message", "message_id"),
    )

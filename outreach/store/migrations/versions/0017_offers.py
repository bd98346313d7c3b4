"""offers: pools of coupon codes, the code each message was given, redemptions

* ``coupon_pools``: a named pool of codes (``offer: {pool: …}`` in a rule).
* ``coupons``: every code, unique across all pools; once given, the one
  message it went to (unique), when, until when it is good, the offer's
  discount at that moment. ``ix_coupons_free`` holds only the codes not yet
  given, in order: what giving codes reads.
* ``coupon_redemptions``: each order that carried a given code (one per
  order), the first one per code the redemption, later ones duplicates; the
  order's revenue and the discount given.
* ``orders.discount``: the discount an order says it got (optional).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
NOT_GIVEN = sa.text('given_at IS NULL')


# A plain ALTER for orders, not batch mode: on SQLite a batch would rebuild
# ``orders``, whose triggers (0002, 0003) keep the per-customer tables.
def upgrade() -> None:
    op.add_column('orders', sa.Column('discount', sa.Numeric(precision=14, scale=2), nullable=True))
    op.create_table('coupon_pools',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_pools')),
    sa.UniqueConstraint('name', name=op.f('uq_coupon_pools_name'))
    )
    op.create_table('coupons',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('pool_id', BIG_ID, nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('added_at', sa.DateTime(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('message_id', BIG_ID, nullable=True),
    sa.Column('given_at', sa.DateTime(), nullable=True),
    sa.Column('percent_off', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('amount_off', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['coupon_pools.id'], name=op.f('fk_coupons_pool_id_coupon_pools')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_coupons_message_id_messages'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('code', name='uq_coupons_code'),
    sa.UniqueConstraint('message_id', name='uq_coupons_message_id')
    )
    op.create_index('ix_coupons_free', 'coupons', ['pool_id', 'id'], unique=False,
                    postgresql_where=NOT_GIVEN, sqlite_where=NOT_GIVEN)
    op.create_table('coupon_redemptions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('coupon_id', BIG_ID, nullable=False),
    sa.Column('order_id', BIG_ID, nullable=False),
    sa.Column('message_id', BIG_ID, nullable=True),
    sa.Column('ordered_at', sa.DateTime(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('discount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount_currency', sa.String(length=3), nullable=False),
    sa.Column('discount_source', sa.String(length=8), nullable=False),
    sa.Column('duplicate', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_coupon_redemptions_coupon_id_coupons'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_coupon_redemptions_order_id_orders'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'],
                            name=op.f('fk_coupon_redemptions_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_redemptions')),
    sa.UniqueConstraint('order_id', name='uq_coupon_redemptions_order_id')
    )
    op.create_index('ix_coupon_redemptions_coupon', 'coupon_redemptions', ['coupon_id', 'ordered_at', 'order_id'],
                    unique=False)
    op.create_index('ix_coupon_redemptions_message', 'coupon_redemptions', ['message_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_coupon_redemptions_message', table_name='coupon_redemptions')
    op.drop_index('ix_coupon_redemptions_coupon', table_name='coupon_redemptions')
    op.drop_table('coupon_redemptions')
    op.drop_index('ix_coupons_free', table_name='coupons')
    op.drop_table('coupons')
    op.drop_table('coupon_pools')
    # SQLite (3.35+) drops a column in place, so no rebuild here either.
    op.drop_column('orders', 'discount')

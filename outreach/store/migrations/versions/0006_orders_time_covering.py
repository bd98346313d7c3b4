"""orders' time index covers customer, amount and id

Windowed reads of orders ("orders and revenue in the last 12 months" for
RFM, the lifecycle windows, upsell's qualifying orders of the last N days)
read every order in a time range. With the time index alone each of those
orders is a separate table look-up: 5M random reads for a 12-month window at
10M orders (19 s on SQLite), and 20k heap pages for upsell's 30 days on
PostgreSQL. With customer, amount and id in the index they are one range
scan of the index (5 s; PostgreSQL reads 58% fewer pages for upsell). The
index keeps its leading column, so every other use of it is unchanged (on
SQLite the id is the rowid, already in every index).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:30:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_time')
        batch_op.create_index('ix_orders_time', ['ordered_at', 'customer_id', 'amount', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_time')
        batch_op.create_index('ix_orders_time', ['ordered_at'], unique=False)

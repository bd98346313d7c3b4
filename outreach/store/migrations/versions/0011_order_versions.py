"""order versions: the signed time of the order webhook's delivery stored

``orders.reported_at`` is the ``X-Outreach-Timestamp`` of the webhook
delivery whose version of the order is stored (None: imported from CSV). A
delivery signed earlier than it — an older body replayed after an update —
changes nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:45:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# A plain ALTER, not batch mode: on SQLite a batch would rebuild ``orders``
# and drop the triggers that keep the per-customer tables (0002, 0003).
def upgrade() -> None:
    op.add_column('orders', sa.Column('reported_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('orders', 'reported_at')

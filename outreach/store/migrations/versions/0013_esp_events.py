"""ESP events: deferred and soft-bounce event types, one-time webhook tokens

``tracking_events.type`` takes two more values of the normalized vocabulary
(``deferred``, ``soft_bounce``; ``bounce`` stays the permanent one), and
``webhook_tokens`` remembers the tokens of signed ESP deliveries (Mailgun's)
so a replayed one is refused.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 21:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD = ('delivered', 'open', 'click', 'reply', 'bounce', 'complaint', 'unsubscribe', 'stop', 'failed',
       'order', 'unknown')
NEW = OLD[:1] + ('deferred',) + OLD[1:5] + ('soft_bounce',) + OLD[5:]


def _check(values: tuple[str, ...]) -> str:
    return "type IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _types(values: tuple[str, ...]) -> None:
    # The enum is a checked string (native_enum=False): on SQLite the batch
    # rebuilds tracking_events (no table refers to it, no trigger is on it).
    with op.batch_alter_table('tracking_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_tracking_events_event_type'), type_='check')
        batch_op.create_check_constraint('event_type', _check(values))


def upgrade() -> None:
    _types(NEW)
    op.create_table('webhook_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('token', sa.String(length=128), nullable=False),
    sa.Column('seen_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_tokens')),
    sa.UniqueConstraint('source', 'token', name='uq_webhook_tokens_token'),
    )


def downgrade() -> None:
    op.drop_table('webhook_tokens')
    op.execute("UPDATE tracking_events SET type = 'bounce' WHERE type = 'soft_bounce'")
    op.execute("UPDATE tracking_events SET type = 'unknown' WHERE type = 'deferred'")
    _types(OLD)

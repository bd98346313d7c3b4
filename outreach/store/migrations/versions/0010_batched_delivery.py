"""batched delivery: worker heartbeats, claims by worker, campaign state

* ``workers``: one row per worker process (embedded drains included) with
  its last heartbeat. A message in ``sending`` names the worker that claimed
  it (``messages.claimed_by``); when that worker's heartbeat stops, its
  messages go back to the queue within a minute — not after a fixed lease of
  wall clock, and never because a command ran with a later ``--now``.
* ``messages.redelivered``: the message was taken back from a worker that
  stopped mid-send, so it may have been delivered twice (reported, never
  hidden).
* ``rules.enabled``, ``paused_at``, ``pause_reason``, ``transactional``:
  what the send path checks per message batch without reading the stored
  definition (a paused or disabled rule sends nothing; transactional rules
  have their own queue and are exempt from the frequency cap).
* The planned-message index leads with status and carries ``not_before``,
  so "deferred or retrying messages now due" is a range read.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Plain ALTERs, not batch mode: on SQLite a batch would rebuild ``messages``
# and ``rules``, whose triggers (0005) refer to each other.
def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('hostname', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    )
    op.add_column('messages', sa.Column('claimed_by', sa.String(length=32), nullable=True))
    op.add_column('messages', sa.Column('redelivered', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.drop_index('ix_messages_status', table_name='messages')
    op.create_index('ix_messages_status', 'messages', ['status', 'not_before'], unique=False)
    op.add_column('rules', sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column('rules', sa.Column('paused_at', sa.DateTime(), nullable=True))
    op.add_column('rules', sa.Column('pause_reason', sa.Text(), nullable=True))
    op.add_column('rules', sa.Column('transactional', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place, so no rebuild here either.
    for column in ('transactional', 'pause_reason', 'paused_at', 'enabled'):
        op.drop_column('rules', column)
    op.drop_index('ix_messages_status', table_name='messages')
    op.create_index('ix_messages_status', 'messages', ['status'], unique=False)
    op.drop_column('messages', 'redelivered')
    op.drop_column('messages', 'claimed_by')
    op.drop_table('workers')

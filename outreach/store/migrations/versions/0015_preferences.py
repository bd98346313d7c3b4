"""preference center: topics turned off, pauses, their evidence, double opt-in requests

* ``rules.topic``: what a rule's messages are about (``offers``, ``care``,
  ``news``, ``feedback``), read by the send-time re-check per batch.
* ``topic_optouts``: the topics each customer turned off (planning and the
  worker skip marketing of those topics).
* ``marketing_pauses``: no marketing to the customer until a date.
* ``preference_records``: the evidence of every topic or pause change
  (append-only, like the consent ledger for channels).
* ``consent_confirmations``: double opt-in requests: a link emailed to the
  address on file, valid until ``expires_at``, confirmed once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f(f'fk_{table}_customer_id_customers'),
                                   ondelete='CASCADE')


# A plain ALTER for rules, not batch mode: on SQLite a batch would rebuild
# ``rules``, whose triggers (0005) refer to ``messages``.
def upgrade() -> None:
    op.add_column('rules', sa.Column('topic', sa.String(length=32), nullable=True))
    op.create_table('topic_optouts',
    sa.Column('customer_id', BIG_ID, nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('opted_out_at', sa.DateTime(), nullable=False),
    _customer_fk('topic_optouts'),
    sa.PrimaryKeyConstraint('customer_id', 'topic', name=op.f('pk_topic_optouts'))
    )
    op.create_table('marketing_pauses',
    sa.Column('customer_id', BIG_ID, nullable=False),
    sa.Column('paused_at', sa.DateTime(), nullable=False),
    sa.Column('paused_until', sa.DateTime(), nullable=False),
    _customer_fk('marketing_pauses'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_marketing_pauses'))
    )
    op.create_table('preference_records',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('customer_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    _customer_fk('preference_records'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_preference_records'))
    )
    op.create_index('ix_preference_records_customer', 'preference_records', ['customer_id', 'recorded_at'],
                    unique=False)
    op.create_table('consent_confirmations',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('customer_id', BIG_ID, nullable=False),
    sa.Column('channel', sa.Enum('email', 'sms', name='channel', native_enum=False, create_constraint=True,
                                 length=24), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('message_id', BIG_ID, nullable=True),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(), nullable=True),
    _customer_fk('consent_confirmations'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_confirmations'))
    )
    op.create_index('ix_consent_confirmations_customer', 'consent_confirmations', ['customer_id', 'requested_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_consent_confirmations_customer', table_name='consent_confirmations')
    op.drop_table('consent_confirmations')
    op.drop_index('ix_preference_records_customer', table_name='preference_records')
    op.drop_table('preference_records')
    op.drop_table('marketing_pauses')
    op.drop_table('topic_optouts')
    # SQLite (3.35+) drops a column in place, so no rebuild here either.
    op.drop_column('rules', 'topic')

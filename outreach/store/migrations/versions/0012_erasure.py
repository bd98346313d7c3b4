"""erasure: erased customers' addresses as hashes, and the audit of erasures

``erased_addresses`` keeps the opt-out of an erased customer as a SHA-256
hash of each address (``outreach.store.erased``), so an import that brings
the address back suppresses it. ``erasures`` is the audit line of each
erasure: which anonymized customer row, when, and counts — no personal data.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 21:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('erased_addresses',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('channel', sa.Enum('email', 'sms', name='channel', native_enum=False, create_constraint=True,
                                 length=24), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('erased_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erased_addresses')),
    sa.UniqueConstraint('channel', 'address_hash', name='uq_erased_addresses_hash')
    )
    op.create_table('erasures',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('customer_id', BIG_ID, nullable=False),
    sa.Column('erased_at', sa.DateTime(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures'))
    )


def downgrade() -> None:
    op.drop_table('erasures')
    op.drop_table('erased_addresses')

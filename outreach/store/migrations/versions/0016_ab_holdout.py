"""independent holdout groups (per-rule assignment scheme), A/B variants and their decisions

* ``rules.assignment``: how a rule's control group (and variants) are drawn.
  Every rule that exists now keeps ``legacy`` — its customers stay in the
  groups they are in, mid-experiment or not — and rules created from now on
  get ``sha256`` (independent across rules). ``outreach campaign regroup
  RULE`` moves an existing rule between experiments.
* ``messages.variant``: the A/B variant a message was planned with (its
  template is the one rendered); NULL for rules without variants and for
  held-out customers.
* ``variant_decisions``: the automatic winner of a rule's A/B test (or that
  there was none), when and why.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


# Plain ALTERs, not batch mode: on SQLite a batch would rebuild ``rules`` and
# ``messages``, whose triggers (0005) refer to each other. The server default
# fills the column of the rules that exist: they keep the scheme their groups
# were drawn with.
def upgrade() -> None:
    op.add_column('rules', sa.Column('assignment', sa.String(length=16), server_default='legacy', nullable=False))
    op.add_column('messages', sa.Column('variant', sa.String(length=64), nullable=True))
    op.create_table('variant_decisions',
    sa.Column('rule_id', BIG_ID, autoincrement=False, nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('winner', sa.String(length=64), nullable=True),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('sample_per_variant', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_variant_decisions_rule_id_rules')),
    sa.PrimaryKeyConstraint('rule_id', name=op.f('pk_variant_decisions'))
    )


def downgrade() -> None:
    op.drop_table('variant_decisions')
    # SQLite (3.35+) drops a column in place, so no rebuild here either.
    op.drop_column('messages', 'variant')
    op.drop_column('rules', 'assignment')

"""seen JWT ids (replay protection) and shared cooldowns

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('seen_token',
    sa.Column('token_key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_key')
    )
    with op.batch_alter_table('seen_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_token_expires_at'), ['expires_at'], unique=False)

    op.create_table('shared_cooldown',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('not_before', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('shared_cooldown')
    with op.batch_alter_table('seen_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_token_expires_at'))
    op.drop_table('seen_token')

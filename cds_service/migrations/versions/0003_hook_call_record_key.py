"""hook_call.record_key: idempotency key for audit records replayed from the spool

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hook_call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_key', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_hook_call_record_key'), ['record_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('hook_call', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hook_call_record_key'))
        batch_op.drop_column('record_key')

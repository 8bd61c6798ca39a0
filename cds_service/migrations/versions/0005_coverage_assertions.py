"""coverage assertions (Da Vinci CRD found-11)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coverage_assertion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('assertion_id', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hook_instance', sa.String(length=100), nullable=False),
    sa.Column('service_id', sa.String(length=100), nullable=False),
    sa.Column('client_iss', sa.String(length=500), nullable=True),
    sa.Column('patient_id', sa.String(length=200), nullable=False),
    sa.Column('order_ref', sa.String(length=500), nullable=False),
    sa.Column('coverage_ref', sa.String(length=500), nullable=False),
    sa.Column('policy_id', sa.String(length=100), nullable=False),
    sa.Column('policy_version', sa.String(length=200), nullable=False),
    sa.Column('decision_kind', sa.String(length=50), nullable=False),
    sa.Column('covered', sa.String(length=50), nullable=False),
    sa.Column('crd_version', sa.String(length=20), nullable=False),
    sa.Column('extension', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('coverage_assertion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coverage_assertion_assertion_id'), ['assertion_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_coverage_assertion_created_at'), ['created_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_coverage_assertion_hook_instance'), ['hook_instance'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('coverage_assertion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coverage_assertion_hook_instance'))
        batch_op.drop_index(batch_op.f('ix_coverage_assertion_created_at'))
        batch_op.drop_index(batch_op.f('ix_coverage_assertion_assertion_id'))
    op.drop_table('coverage_assertion')

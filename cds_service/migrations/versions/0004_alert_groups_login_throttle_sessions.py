"""alert groups, login throttle, reviewer session versions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:30:00

- ``alert.group_key``: the draft order and decision of each card, so the review page shows one
  alert per order (issue 8 §8); existing rows are backfilled from their own columns.
- ``login_throttle``: failed review logins per account and per client address (issue 9 §7).
- ``reviewer.session_version``: bumped at logout so a captured session cookie stops working.
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _group_key(order_id, drug, policy_id, policy_section, indication_family, decision_kind) -> str:
    """Frozen copy of ``Alert.key_for`` as of this revision (a later change needs a new revision)."""
    parts = [order_id, drug, policy_id, policy_section, indication_family, decision_kind]
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_key', sa.String(length=64), nullable=True))

    alert = sa.table('alert', sa.column('id', sa.Integer()), sa.column('order_id', sa.String()),
                     sa.column('drug', sa.String()), sa.column('policy_id', sa.String()),
                     sa.column('policy_section', sa.String()),
                     sa.column('indication_family', sa.String()),
                     sa.column('decision_kind', sa.String()), sa.column('group_key', sa.String()))
    connection = op.get_bind()
    rows = connection.execute(sa.select(
        alert.c.id, alert.c.order_id, alert.c.drug, alert.c.policy_id, alert.c.policy_section,
        alert.c.indication_family, alert.c.decision_kind)).all()
    for row in rows:
        connection.execute(alert.update().where(alert.c.id == row.id).values(group_key=_group_key(
            row.order_id, row.drug, row.policy_id, row.policy_section, row.indication_family,
            row.decision_kind)))

    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.alter_column('group_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_alert_group_key'), ['group_key'], unique=False)

    with op.batch_alter_table('reviewer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0',
                                      nullable=False))

    op.create_table('login_throttle',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('locked_until', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('login_throttle')
    with op.batch_alter_table('reviewer', schema=None) as batch_op:
        batch_op.drop_column('session_version')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_group_key'))
        batch_op.drop_column('group_key')

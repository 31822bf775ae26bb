"""API key lifecycle: expiry, revocation, last use, and a rotated-out secret's grace period.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIMES = ("expires_at", "revoked_at", "last_used_at", "previous_valid_until")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        for name in TIMES:
            table.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("previous_secret_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("previous_secret_hash")
        for name in reversed(TIMES):
            table.drop_column(name)

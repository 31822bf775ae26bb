"""The asset catalogue becomes a view of its own (`assets`); the holdings view keeps its totals
(`rm_asset_totals`) and its pending investments (`rm_pending_investments`) in tables of its own.

Nothing is replayed: the catalogue's rows stay where they are, and what the holdings view read
from other tables is copied into its own. Every view is at one position (the runner moves them
together), so the copies are what the holdings view would have written there: the totals it
kept in `rm_assets`, and the investments the investors view shows as pending payment (which
the holdings view used to read back when it loaded). The new `assets` view starts at the
holdings view's position, where its rows already are.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    exact = projections.schema.Exact(precision=40, scale=0)
    op.create_table(
        "rm_asset_totals",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("total_supply", exact, nullable=False),
        sa.Column("holder_count", sa.Integer(), nullable=False),
        sa.Column("changes_since_checkpoint", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_rm_asset_totals")),
    )
    op.create_table(
        "rm_pending_investments",
        sa.Column("investment_id", sa.String(length=36), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("accepted_amount", exact, nullable=False),
        sa.PrimaryKeyConstraint("investment_id", name=op.f("pk_rm_pending_investments")),
    )
    op.execute(
        "INSERT INTO rm_asset_totals (asset_id, total_supply, holder_count, changes_since_checkpoint)"
        " SELECT asset_id, total_supply, holder_count, changes_since_checkpoint FROM rm_assets"
    )
    op.execute(
        "INSERT INTO rm_pending_investments (investment_id, asset_id, investor_id, accepted_amount)"
        " SELECT investment_id, asset_id, investor_id, accepted_amount FROM rm_investments"
        " WHERE status = 'pending_payment'"
    )
    with op.batch_alter_table("rm_assets") as table:
        table.drop_column("changes_since_checkpoint")
        table.drop_column("holder_count")
        table.drop_column("total_supply")
    op.execute(
        "INSERT INTO rm_tracking (view, position)"
        " SELECT 'assets', position FROM rm_tracking WHERE view = 'holdings'"
    )


def downgrade() -> None:
    exact = projections.schema.Exact(precision=40, scale=0)
    totals = {"total_supply": exact, "holder_count": sa.Integer(), "changes_since_checkpoint": sa.Integer()}
    with op.batch_alter_table("rm_assets") as table:
        for name, kind in totals.items():
            table.add_column(sa.Column(name, kind, nullable=False, server_default="0"))
    for name in totals:
        op.execute(
            f"UPDATE rm_assets SET {name} ="
            f" (SELECT t.{name} FROM rm_asset_totals t WHERE t.asset_id = rm_assets.asset_id)"
        )
    with op.batch_alter_table("rm_assets") as table:
        for name in totals:
            table.alter_column(name, server_default=None)
    op.execute("DELETE FROM rm_tracking WHERE view = 'assets'")
    op.drop_table("rm_pending_investments")
    op.drop_table("rm_asset_totals")

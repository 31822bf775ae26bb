"""Valuations and portfolio analytics: valuations, investors' dated flows, the days of positions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    exact = projections.schema.Exact(precision=40, scale=0)
    op.create_table(
        "rm_valuations",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("price_per_token", exact, nullable=False),
        sa.Column("valued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "position", name=op.f("pk_rm_valuations")),
    )
    op.create_table(
        "rm_investor_flows",
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cash", exact, nullable=False),
        sa.Column("quantity", exact, nullable=False),
        sa.Column("frozen", exact, nullable=False),
        sa.Column("invested", exact, nullable=False),
        sa.Column("paid", exact, nullable=False),
        sa.Column("pending", exact, nullable=False),
        sa.PrimaryKeyConstraint("investor_id", "position", "asset_id", name=op.f("pk_rm_investor_flows")),
    )
    op.create_table(
        "rm_analytics_days",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_rm_analytics_days")),
    )
    # The new view starts at the beginning of history. Over read models that have already
    # projected events the runner then refuses to go on ("read models disagree"): `ledger
    # replay` rebuilds every view, this one with the whole history.
    op.execute(
        "INSERT INTO rm_tracking (view, position) SELECT 'analytics', 0 WHERE EXISTS (SELECT 1 FROM rm_tracking)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM rm_tracking WHERE view = 'analytics'")
    op.drop_table("rm_analytics_days")
    op.drop_table("rm_investor_flows")
    op.drop_table("rm_valuations")

"""Statements: one row per movement of an investor's holding, with the balance after it; an index
of investments by asset for their list.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    exact = projections.schema.Exact(precision=40, scale=0)
    op.create_table(
        "rm_statements",
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("counterparty", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=36), nullable=True),
        sa.Column("quantity", exact, nullable=False),
        sa.Column("amount", exact, nullable=True),
        sa.Column("balance", exact, nullable=False),
        sa.Column("frozen", exact, nullable=False),
        sa.PrimaryKeyConstraint("investor_id", "position", "asset_id", name=op.f("pk_rm_statements")),
    )
    op.create_index(
        op.f("ix_rm_statements_asset_id_position_investor_id"),
        "rm_statements",
        ["asset_id", "position", "investor_id"],
    )
    op.create_index(
        op.f("ix_rm_investments_asset_id_placed_position"),
        "rm_investments",
        ["asset_id", "placed_position"],
    )
    # As 0006: the new view starts at the beginning of history; read models that have already
    # projected events must be rebuilt with `ledger replay` (the runner says so).
    op.execute(
        "INSERT INTO rm_tracking (view, position) SELECT 'statements', 0 WHERE EXISTS (SELECT 1 FROM rm_tracking)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM rm_tracking WHERE view = 'statements'")
    op.drop_index(op.f("ix_rm_investments_asset_id_placed_position"), table_name="rm_investments")
    op.drop_index(op.f("ix_rm_statements_asset_id_position_investor_id"), table_name="rm_statements")
    op.drop_table("rm_statements")

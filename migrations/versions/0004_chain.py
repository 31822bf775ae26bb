"""The chain read models: mirrored logs, outbound operation outcomes, mirrors, reconciliations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rm_chain_logs",
        sa.Column("log_id", sa.String(length=36), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("from_wallet", sa.String(length=42), nullable=True),
        sa.Column("to_wallet", sa.String(length=42), nullable=True),
        sa.Column("amount", projections.schema.Exact(precision=40, scale=0), nullable=True),
        sa.Column("flag", sa.Boolean(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("retracted", sa.Boolean(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_rm_chain_logs")),
    )
    op.create_index("ix_rm_chain_logs_asset_id", "rm_chain_logs", ["asset_id"])
    op.create_table(
        "rm_chain_operations",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "asset_id", name=op.f("pk_rm_chain_operations")),
    )
    op.create_table(
        "rm_chain_mirrors",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("paused_at_start", sa.Boolean(), nullable=False),
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=False),
        sa.Column("final_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_rm_chain_mirrors")),
    )
    op.create_table(
        "rm_reconciliations",
        sa.Column("reconciliation_id", sa.String(length=36), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("final_block", sa.BigInteger(), nullable=False),
        sa.Column("ledger_position", sa.BigInteger(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reconciliation_id", name=op.f("pk_rm_reconciliations")),
    )
    op.create_index("ix_rm_reconciliations_asset_id", "rm_reconciliations", ["asset_id"])
    # The new view starts where the others are: no chain event existed before it.
    op.execute(
        "INSERT INTO rm_tracking (view, position) SELECT 'chain', COALESCE(MIN(position), 0) "
        "FROM rm_tracking HAVING COUNT(*) > 0"
    )


def downgrade() -> None:
    op.execute("DELETE FROM rm_tracking WHERE view = 'chain'")
    op.drop_index("ix_rm_reconciliations_asset_id", table_name="rm_reconciliations")
    op.drop_table("rm_reconciliations")
    op.drop_table("rm_chain_mirrors")
    op.drop_table("rm_chain_operations")
    op.drop_index("ix_rm_chain_logs_asset_id", table_name="rm_chain_logs")
    op.drop_table("rm_chain_logs")

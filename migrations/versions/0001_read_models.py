"""Read models: catalogue, holdings and cap-table history, investors, investments, distributions, votes.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 21:06:48.479989
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rm_assets",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_price", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("authorized_supply", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("min_investment", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("max_investment", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("max_holders", sa.Integer(), nullable=True),
        sa.Column("max_balance", projections.schema.Exact(precision=40, scale=0), nullable=True),
        sa.Column("allowed_countries", sa.Text(), nullable=False),
        sa.Column("accredited_only", sa.Boolean(), nullable=False),
        sa.Column("lockup_seconds", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("offering_open", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("token_address", sa.String(length=42), nullable=True),
        sa.Column("identity_registry", sa.String(length=42), nullable=True),
        sa.Column("total_supply", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("holder_count", sa.Integer(), nullable=False),
        sa.Column("changes_since_checkpoint", sa.Integer(), nullable=False),
        sa.Column("registered_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_rm_assets")),
    )
    op.create_table(
        "rm_captable_checkpoints",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("frozen", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.PrimaryKeyConstraint(
            "asset_id", "position", "investor_id", name=op.f("pk_rm_captable_checkpoints")
        ),
    )
    op.create_table(
        "rm_distributions",
        sa.Column("distribution_id", sa.String(length=36), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("record_position", sa.BigInteger(), nullable=False),
        sa.Column("declared_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("distribution_id", name=op.f("pk_rm_distributions")),
    )
    with op.batch_alter_table("rm_distributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_distributions_asset_id"), ["asset_id"], unique=False)

    op.create_table(
        "rm_entitlements",
        sa.Column("distribution_id", sa.String(length=36), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("distribution_id", "investor_id", name=op.f("pk_rm_entitlements")),
    )
    with op.batch_alter_table("rm_entitlements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_entitlements_investor_id"), ["investor_id"], unique=False)

    op.create_table(
        "rm_holding_changes",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("frozen", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "position", "investor_id", name=op.f("pk_rm_holding_changes")),
    )
    op.create_table(
        "rm_holdings",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("frozen", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("address_frozen", sa.Boolean(), nullable=False),
        sa.Column("invested_amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "investor_id", name=op.f("pk_rm_holdings")),
    )
    with op.batch_alter_table("rm_holdings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_holdings_investor_id"), ["investor_id"], unique=False)

    op.create_table(
        "rm_investments",
        sa.Column("investment_id", sa.String(length=36), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("quantity", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("accepted_amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("refund_amount", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_ref", sa.String(length=200), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_position", sa.BigInteger(), nullable=False),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("investment_id", name=op.f("pk_rm_investments")),
    )
    with op.batch_alter_table("rm_investments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_investments_investor_id"), ["investor_id"], unique=False)

    op.create_table(
        "rm_investor_wallets",
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("added_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("wallet", name=op.f("pk_rm_investor_wallets")),
    )
    with op.batch_alter_table("rm_investor_wallets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_investor_wallets_investor_id"), ["investor_id"], unique=False)

    op.create_table(
        "rm_investors",
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("accredited", sa.Boolean(), nullable=False),
        sa.Column("kyc_status", sa.String(length=16), nullable=False),
        sa.Column("kyc_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("investor_id", name=op.f("pk_rm_investors")),
    )
    op.create_table(
        "rm_proposals",
        sa.Column("proposal_id", sa.String(length=36), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("quorum_bps", sa.Integer(), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snapshot_position", sa.BigInteger(), nullable=False),
        sa.Column("supply_at_snapshot", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("quorum_reached", sa.Boolean(), nullable=True),
        sa.Column("result", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("proposal_id", name=op.f("pk_rm_proposals")),
    )
    with op.batch_alter_table("rm_proposals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rm_proposals_asset_id"), ["asset_id"], unique=False)

    op.create_table(
        "rm_tracking",
        sa.Column("view", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("view", name=op.f("pk_rm_tracking")),
    )
    op.create_table(
        "rm_votes",
        sa.Column("proposal_id", sa.String(length=36), nullable=False),
        sa.Column("investor_id", sa.String(length=64), nullable=False),
        sa.Column("option", sa.String(length=100), nullable=False),
        sa.Column("weight", projections.schema.Exact(precision=40, scale=0), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "investor_id", name=op.f("pk_rm_votes")),
    )


def downgrade() -> None:
    op.drop_table("rm_votes")
    op.drop_table("rm_tracking")
    with op.batch_alter_table("rm_proposals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_proposals_asset_id"))

    op.drop_table("rm_proposals")
    op.drop_table("rm_investors")
    with op.batch_alter_table("rm_investor_wallets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_investor_wallets_investor_id"))

    op.drop_table("rm_investor_wallets")
    with op.batch_alter_table("rm_investments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_investments_investor_id"))

    op.drop_table("rm_investments")
    with op.batch_alter_table("rm_holdings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_holdings_investor_id"))

    op.drop_table("rm_holdings")
    op.drop_table("rm_holding_changes")
    with op.batch_alter_table("rm_entitlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_entitlements_investor_id"))

    op.drop_table("rm_entitlements")
    with op.batch_alter_table("rm_distributions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rm_distributions_asset_id"))

    op.drop_table("rm_distributions")
    op.drop_table("rm_captable_checkpoints")
    op.drop_table("rm_assets")

"""The statements and analytics views keep in tables of their own what they loaded from other
views' tables: the registered assets (`rm_statement_assets`; `rm_analytics_assets` with each
asset's decimals and unit price) and the dividend entitlements declared and not yet paid
(`rm_statement_entitlements`, `rm_analytics_entitlements`).

Nothing is replayed: every view is at one position (the runner moves them together), so the
copies are what these views would have written there. The assets are the catalogue's rows
(an asset's decimals and unit price never change after its registration), and the unpaid
entitlements are the distributions view's rows not marked paid. The statements view's balances
need no table: they are the last of its own rows of each investor and asset, which are what it
read from the holdings view's table (both move a holding by the same events). A read database
whose views disagree on their position (0006 or 0007 left it waiting for `ledger replay`) is
still refused by the runner until replayed, and the replay rebuilds these tables too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNPAID = ("rm_statement_entitlements", "rm_analytics_entitlements")


def upgrade() -> None:
    exact = projections.schema.Exact(precision=40, scale=0)
    op.create_table(
        "rm_statement_assets",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_rm_statement_assets")),
    )
    op.create_table(
        "rm_analytics_assets",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("unit_price", exact, nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_rm_analytics_assets")),
    )
    for name in UNPAID:
        op.create_table(
            name,
            sa.Column("distribution_id", sa.String(length=36), nullable=False),
            sa.Column("investor_id", sa.String(length=64), nullable=False),
            sa.Column("asset_id", sa.String(length=32), nullable=False),
            sa.Column("amount", exact, nullable=False),
            sa.PrimaryKeyConstraint("distribution_id", "investor_id", name=op.f(f"pk_{name}")),
        )
    op.execute("INSERT INTO rm_statement_assets (asset_id) SELECT asset_id FROM rm_assets")
    op.execute(
        "INSERT INTO rm_analytics_assets (asset_id, decimals, unit_price)"
        " SELECT asset_id, decimals, unit_price FROM rm_assets"
    )
    for name in UNPAID:
        op.execute(
            f"INSERT INTO {name} (distribution_id, investor_id, asset_id, amount)"
            " SELECT distribution_id, investor_id, asset_id, amount FROM rm_entitlements"
            " WHERE NOT paid"
        )


def downgrade() -> None:
    for name in UNPAID:
        op.drop_table(name)
    op.drop_table("rm_analytics_assets")
    op.drop_table("rm_statement_assets")

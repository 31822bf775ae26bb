"""Cap-table checkpoints as one row each (every holder, as JSON columns) instead of one row per
holder: `rm_captable_checkpoints` becomes `rm_captable_snapshots`, its checkpoints carried over.
On PostgreSQL `rm_holdings` gets a fillfactor of 70, so that rewriting a holder's row can be a
heap-only update.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from itertools import groupby

import sqlalchemy as sa
from alembic import op

import projections.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    snapshots = op.create_table(
        "rm_captable_snapshots",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("holders", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "position", name=op.f("pk_rm_captable_snapshots")),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT asset_id, position, investor_id, quantity, frozen FROM rm_captable_checkpoints"
            " ORDER BY asset_id, position"
        ),
        execution_options={"stream_results": True, "yield_per": 10_000},
    )
    for (asset_id, position), holders in groupby(rows, key=lambda r: (r.asset_id, r.position)):
        # as `projections.holdings.encode_holders` writes them: columns in investor id order
        # (sorted here, not by the database's collation); quantities are NUMERIC on
        # PostgreSQL and zero-padded text on SQLite, and int() reads both
        ordered = sorted(holders, key=lambda r: str(r.investor_id))
        columns = [
            [r.investor_id for r in ordered],
            [int(r.quantity) for r in ordered],
            [int(r.frozen) for r in ordered],
        ]
        conn.execute(
            snapshots.insert(),
            {
                "asset_id": asset_id,
                "position": position,
                "holders": json.dumps(columns, separators=(",", ":")),
            },
        )
    op.drop_table("rm_captable_checkpoints")
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE rm_holdings SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rm_holdings RESET (fillfactor)")
    checkpoints = op.create_table(
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
    conn = op.get_bind()
    for row in conn.execute(sa.text("SELECT asset_id, position, holders FROM rm_captable_snapshots")).all():
        ids, quantities, frozen = json.loads(row.holders)
        if ids:
            conn.execute(
                checkpoints.insert(),
                [
                    {
                        "asset_id": row.asset_id,
                        "position": row.position,
                        "investor_id": i,
                        "quantity": q,
                        "frozen": f,
                    }
                    for i, q, f in zip(ids, quantities, frozen, strict=True)
                ],
            )
    op.drop_table("rm_captable_snapshots")

"""Which event streams concern an asset or an investor, for filtered audit listings."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ledger.domain.asset import Asset
from ledger.domain.investor import Investor, WalletClaim
from projections.distributions import distributions, entitlements
from projections.investors import investments, wallets
from projections.proposals import proposals, votes


def streams_of_asset(conn: Connection, asset_id: str) -> set[str]:
    """The asset's own stream and those of its investments, distributions and proposals."""
    ids = {str(Asset.create_id(asset_id))}
    for column, where in (
        (investments.c.investment_id, investments.c.asset_id),
        (distributions.c.distribution_id, distributions.c.asset_id),
        (proposals.c.proposal_id, proposals.c.asset_id),
    ):
        ids.update(conn.execute(select(column).where(where == asset_id)).scalars())
    return ids


def streams_of_investor(conn: Connection, investor_id: str) -> set[str]:
    """The investor's stream, wallet claims, investments, and the distributions and proposals
    they are part of."""
    ids = {str(Investor.create_id(investor_id))}
    ids.update(
        str(WalletClaim.create_id(w))
        for w in conn.execute(select(wallets.c.wallet).where(wallets.c.investor_id == investor_id)).scalars()
    )
    for column, where in (
        (investments.c.investment_id, investments.c.investor_id),
        (entitlements.c.distribution_id, entitlements.c.investor_id),
        (votes.c.proposal_id, votes.c.investor_id),
    ):
        ids.update(conn.execute(select(column).where(where == investor_id)).scalars())
    return ids

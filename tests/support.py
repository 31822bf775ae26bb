"""Builders for test scenarios: assets, onboarded investors, settled investments."""

from __future__ import annotations

from typing import Any

from ledger.application import LedgerApplication

ASSET_TERMS: dict[str, Any] = {
    "asset_id": "TOLL-JKT-01",
    "name": "Jakarta outer ring toll road",
    "symbol": "TJK",
    "decimals": 0,
    "currency": "IDR",
    "unit_price": 100_000,
    "authorized_supply": 1_000_000,
    "min_investment": 100_000,
    "max_investment": 1_000_000_000,
}


def wallet_for(investor_id: str) -> str:
    return "0x" + (investor_id.encode().hex() * 20)[:40]


def open_asset(app: LedgerApplication, **overrides: Any) -> str:
    """Registers, approves and opens the offering of an asset; returns its id."""
    terms = {**ASSET_TERMS, **overrides}
    app.register_asset(terms)
    app.approve_asset(terms["asset_id"])
    app.set_offering(terms["asset_id"], True)
    return str(terms["asset_id"])


def onboard(
    app: LedgerApplication,
    investor_id: str,
    country: str = "ID",
    accredited: bool = False,
    kyc: str = "approved",
) -> str:
    app.register_investor(investor_id, country, wallet_for(investor_id), accredited)
    if kyc != "pending":
        app.update_kyc(investor_id, kyc)
    return investor_id


def holding(app: LedgerApplication, asset_id: str, investor_id: str, quantity: int) -> str:
    """Gives an investor `quantity` tokens through a paid investment (asset unit price must be known)."""
    asset = app.get_asset(asset_id)
    amount = -(-quantity * asset.unit_price // 10**asset.decimals)
    outcome = app.place_investment(investor_id, asset_id, amount)
    investment_id = str(outcome.result["investment_id"])
    app.confirm_payment(investment_id, f"pay-{investment_id}")
    return investment_id

from __future__ import annotations

from ledger.application import LedgerApplication
from tests.support import holding, onboard, open_asset


def test_a_settled_investment_then_a_transfer_moves_tokens(app: LedgerApplication) -> None:
    asset_id = open_asset(app)
    onboard(app, "alice")
    onboard(app, "bob", country="SG")
    holding(app, asset_id, "alice", 10)
    app.transfer(asset_id, "alice", "bob", 4)
    asset = app.get_asset(asset_id)
    assert asset.balances == {"alice": 6, "bob": 4}
    assert app.admin.verify().ok

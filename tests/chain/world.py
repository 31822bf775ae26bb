"""A ledger wired to a real anvil through the chain adapter, and builders for chain scenarios."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from sqlalchemy import Engine

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.mirror import SyncReport
from adapters.chain.service import ChainService
from adapters.chain.trex import Suite
from ledger.application import LedgerApplication
from tests.chain.trex_helpers import TrexTestClient
from tests.support import open_asset

CONFIRMATIONS = 3
WALLETS = {name: DEV_KEYS[i] for i, name in enumerate(["alice", "bob", "carol", "dave", "erin", "gina"], 1)}


def address(name: str) -> str:
    return str(Account.from_key(WALLETS[name]).address)


@dataclass
class World:
    app: LedgerApplication
    engine: Engine
    service: ChainService
    anvil: Anvil
    client: TrexTestClient

    def settle(self) -> None:
        """Carries the outbox out and buries it under enough blocks to be final."""
        self.service.carry_out()
        self.anvil.mine(CONFIRMATIONS + 1)

    def reconcile(self, asset_id: str) -> dict[str, Any]:
        return self.service.reconcile(asset_id)[1]

    def mirror(self) -> list[SyncReport]:
        reports = self.service.sync()
        self.service.runner.catch_up()
        return reports

    def suite(self, asset_id: str) -> Suite:
        worker = self.service.worker
        assert worker is not None
        return worker.suite(asset_id)


def onboard(app: LedgerApplication, name: str, country: str = "ID") -> None:
    app.register_investor(name, country, address(name), False)
    app.update_kyc(name, "approved")


def tokenized(world: World) -> str:
    asset_id = open_asset(world.app)
    world.service.deploy(asset_id)
    for name, country in (("alice", "ID"), ("bob", "SG"), ("carol", "ID"), ("dave", "SG")):
        onboard(world.app, name, country)
    return asset_id

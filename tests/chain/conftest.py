"""Chain fixtures: a real anvil from contracts/, a T-REX client acting as agent, a deployed suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import Suite, TrexClient
from ledger.application import LedgerApplication
from ledger.config import store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for
from tests.chain.trex_helpers import TrexTestClient
from tests.chain.world import CONFIRMATIONS, World

ID, SG = 360, 702


@pytest.fixture
def trex_client(anvil: Anvil) -> TrexTestClient:
    return TrexTestClient(anvil.url, DEV_KEYS[0])


@pytest.fixture
def suite(trex_client: TrexClient) -> Suite:
    return trex_client.deploy_suite(
        name="Toll Road", symbol="TJK", decimals=0, countries=[ID, SG], salt="TJK"
    )


@pytest.fixture
def world(store_url: str, anvil: Anvil) -> Iterator[World]:
    app = LedgerApplication(store_env(store_url))
    engine = engine_for(store_url)
    upgrade(engine)
    runner = ProjectionRunner(app, engine)
    client = TrexTestClient(anvil.url, DEV_KEYS[0])
    service = ChainService(app, runner, Rpc(anvil.url), client, CONFIRMATIONS)
    yield World(app, engine, service, anvil, client)
    app.close()
    engine.dispose()

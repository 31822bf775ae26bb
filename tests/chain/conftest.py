"""Chain fixtures: a real anvil from contracts/, a T-REX client acting as agent, a deployed suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.artifacts import ArtifactNotFoundError, anvil_binary
from adapters.chain.trex import Suite, TrexClient

REQUIRE_SERVICES = os.environ.get("LEDGER_REQUIRE_SERVICES") == "1"
ID, SG = 360, 702


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    try:
        anvil_binary()
    except ArtifactNotFoundError as error:
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {error}")
        pytest.skip(str(error))
    node = Anvil.start()
    yield node
    node.stop()


@pytest.fixture
def trex_client(anvil: Anvil) -> TrexClient:
    return TrexClient(anvil.url, DEV_KEYS[0])


@pytest.fixture
def suite(trex_client: TrexClient) -> Suite:
    return trex_client.deploy_suite(
        name="Toll Road", symbol="TJK", decimals=0, countries=[ID, SG], salt="TJK"
    )

"""GET /v1/audit/verify?anchored=true (SPEC 4.7): the store against the head anchored on a real
anvil, the signer's public key given by the auditor; the errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.chain import anchor
from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import TrexClient
from projections.runner import ProjectionRunner
from tests.chain.world import CONFIRMATIONS
from tests.e2e.conftest import Api, assert_problem

pytestmark = pytest.mark.e2e


@pytest.fixture
def chain(lite_api: Api, anvil: Anvil) -> Iterator[ChainService]:
    ledger = lite_api.services.ledger
    client = TrexClient(anvil.url, DEV_KEYS[0])
    address, block = anchor.deploy(client)
    service = ChainService(
        ledger, ProjectionRunner(ledger, lite_api.services.runner.engine), Rpc(anvil.url), client,
        CONFIRMATIONS, address, block,
    )
    lite_api.client.app.state.chain = service  # type: ignore[attr-defined]
    yield service
    lite_api.client.app.state.chain = None  # type: ignore[attr-defined]


@pytest.mark.anvil
def test_the_store_is_verified_against_the_anchored_head(
    lite_api: Api, chain: ChainService, anvil: Anvil
) -> None:
    api = lite_api
    api.open_asset()
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw().hex()
    head = api.services.ledger.transparency.sign_head(key, api.clock())
    assert chain.client is not None and chain.anchor_address is not None
    anchor.publish(chain.client, chain.anchor_address, head)
    path = f"/v1/audit/verify?anchored=true&public_key={public}"

    early = api.get(path, who="auditor").json()  # not final yet: no anchor counts
    assert early["ok"] is False and early["anchor"] is None
    anvil.mine(CONFIRMATIONS)
    body = api.get(path, who="auditor").json()
    assert body["ok"] is True and body["tree_size"] == head.tree_size
    assert body["anchor"]["head"] == head.as_dict()

    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    assert api.get(f"/v1/audit/verify?anchored=true&public_key={other}", who="auditor").json()["ok"] is False
    assert_problem(api.get("/v1/audit/verify?anchored=true", who="auditor"), 422, "validation_error")
    assert_problem(api.get(path, who="investor:alice"), 403, "forbidden")


def test_anchored_verification_needs_the_chain(lite_api: Api) -> None:
    public = "00" * 32
    response = lite_api.get(f"/v1/audit/verify?anchored=true&public_key={public}", who="auditor")
    assert_problem(response, 503, "chain_unavailable")

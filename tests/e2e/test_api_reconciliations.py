"""Reconciliations over HTTP: run one against a real anvil, read it, replay it; the errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import TrexClient
from projections.runner import ProjectionRunner
from tests.chain.world import CONFIRMATIONS
from tests.e2e.conftest import ASSET_ID, UNKNOWN_UUID, Api, assert_problem

pytestmark = pytest.mark.e2e


@pytest.fixture
def chain(lite_api: Api, anvil: Anvil) -> Iterator[ChainService]:
    ledger = lite_api.services.ledger
    service = ChainService(
        ledger,
        ProjectionRunner(ledger, lite_api.services.runner.engine),
        Rpc(anvil.url),
        TrexClient(anvil.url, DEV_KEYS[0]),
        CONFIRMATIONS,
    )
    lite_api.client.app.state.chain = service  # type: ignore[attr-defined]
    yield service
    lite_api.client.app.state.chain = None  # type: ignore[attr-defined]


@pytest.mark.anvil
def test_a_reconciliation_is_run_read_and_replayed(lite_api: Api, chain: ChainService, anvil: Anvil) -> None:
    api = lite_api
    asset_id = api.open_asset()
    chain.deploy(asset_id)
    api.onboard("alice")
    api.holding(asset_id, "alice", 12)
    chain.carry_out()
    anvil.mine(CONFIRMATIONS + 1)

    run = api.ok("/v1/reconciliations", {"asset_id": asset_id}, idem="rec-1")
    assert isinstance(run["position"], int)
    report = api.read(f"/v1/reconciliations/{run['reconciliation_id']}", run["position"])
    assert report["asset_id"] == asset_id and report["differences"] == [] and report["in_flight"] == []
    assert report["holders_checked"] == 1 and isinstance(report["final_block"], int)
    assert api.read(f"/v1/assets/{asset_id}/reconciliations/latest", run["position"]) == report

    head = api.head()
    assert api.ok("/v1/reconciliations", {"asset_id": asset_id}, idem="rec-1") == run
    assert api.head() == head
    other = api.post("/v1/reconciliations", {"asset_id": "OTHER-01"}, idem="rec-1")
    assert_problem(other, 409, "idempotency_key_reused")
    assert api.head() == head


def test_reconciling_needs_a_known_bound_asset_and_a_chain(lite_api: Api) -> None:
    api = lite_api
    assert_problem(api.post("/v1/reconciliations", {"asset_id": "NOPE-01"}), 404, "not_found")
    assert_problem(api.post("/v1/reconciliations", {"asset_id": "bad id"}), 422, "validation_error")
    assert_problem(api.post("/v1/reconciliations", {}), 422, "validation_error")
    api.open_asset()
    head = api.head()
    assert_problem(api.post("/v1/reconciliations", {"asset_id": ASSET_ID}), 422, "invalid_state")
    api.ok(
        f"/v1/assets/{ASSET_ID}/token",
        {"chain_id": 31337, "token_address": "0x" + "7" * 40, "identity_registry": "0x" + "8" * 40},
    )
    head = api.head()
    assert_problem(api.post("/v1/reconciliations", {"asset_id": ASSET_ID}), 503, "chain_unavailable")
    assert api.head() == head


def test_reading_reconciliations_that_do_not_exist_is_404(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    assert_problem(api.get(f"/v1/reconciliations/{UNKNOWN_UUID}"), 404, "not_found")
    assert_problem(api.get("/v1/reconciliations/not-a-uuid"), 422, "validation_error")
    assert_problem(api.get(f"/v1/assets/{ASSET_ID}/reconciliations/latest"), 404, "not_found")
    assert_problem(api.get(f"/v1/reconciliations/{UNKNOWN_UUID}", who="investor:alice"), 403, "forbidden")
    assert api.get(f"/v1/reconciliations/{UNKNOWN_UUID}", who="auditor").status_code == 404
    assert_problem(api.post("/v1/reconciliations", {"asset_id": ASSET_ID}, who="auditor"), 403, "forbidden")

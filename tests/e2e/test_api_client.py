"""A back-end developer's view of the API: a Python client generated from the live `/openapi.json`
by openapi-python-client (in its own `.venv-codegen`, see the Makefile) drives a whole scenario:
register, invest, confirm, transfer, distribute, vote, read the portfolio, the cap table as of a
position and the audit events. Every answer is parsed into the generated models, so a body that
strays from its declared schema fails here as it would fail a consumer.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import REQUIRE_SERVICES
from tests.e2e.conftest import Api
from tests.support import wallet_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / ".venv-codegen" / "bin" / "openapi-python-client"
PACKAGE = "ledger_api_client"


@pytest.fixture
def generated(lite_api: Api, tmp_path: Path) -> Iterator[ModuleType]:
    """The client package generated from the document the running app serves."""
    if not GENERATOR.exists():
        reason = f"{GENERATOR} is missing: `make .venv-codegen/.installed` builds it"
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    document = tmp_path / "openapi.json"
    document.write_bytes(lite_api.client.get("/openapi.json").content)
    config = tmp_path / "codegen.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the code is imported, not read
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--meta", "none", "--config", str(config),
         "--output-path", str(tmp_path / PACKAGE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every operation and schema was generated
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


class Caller:
    """The generated package, bound to one API key: `call("assets.register_asset", body=...)`."""

    def __init__(self, package: ModuleType, api: Api, who: str) -> None:
        self.package = package
        http = TestClient(api.client.app, headers={"Authorization": f"Bearer {api.key(who)}"})
        self.client = package.Client(base_url=str(http.base_url)).set_httpx_client(http)

    def model(self, kind: str, /, **fields: Any) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), kind)(**fields)

    def __call__(self, operation: str, status: int = 200, **kwargs: Any) -> Any:
        module = importlib.import_module(f"{PACKAGE}.api.{operation}")
        response = module.sync_detailed(client=self.client, **kwargs)
        assert response.status_code == status, (operation, response.status_code, response.content)
        return response.parsed


def test_a_generated_client_drives_a_whole_scenario(generated: ModuleType, lite_api: Api) -> None:
    admin = Caller(generated, lite_api, "admin")
    auditor = Caller(generated, lite_api, "auditor")
    alice = Caller(generated, lite_api, "investor:alice")

    terms = admin.model(
        "AssetIn", asset_id="CLIENT-01", name="Client-built fund", symbol="CBF", decimals=0, currency="IDR",
        unit_price="100000", authorized_supply="1000", min_investment="100000", max_investment="100000000",
    )  # fmt: skip
    registered = admin("assets.register_asset", 201, body=terms)
    assert registered.asset_id == "CLIENT-01" and registered.position > 0
    admin("assets.approve_asset", asset_id="CLIENT-01")
    admin("assets.set_offering", asset_id="CLIENT-01", body=admin.model("OfferingIn", open_=True))
    for investor_id in ("alice", "bob"):
        body = admin.model(
            "InvestorIn", investor_id=investor_id, country="ID", wallet=wallet_for(investor_id)
        )
        assert admin("investors.register_investor", 201, body=body).investor_id == investor_id
        admin("investors.update_kyc", investor_id=investor_id, body=admin.model("KycIn", status="approved"))

    invest = admin.model("InvestmentIn", investor_id="alice", asset_id="CLIENT-01", amount="1000000")
    placed = admin("investments_and_transfers.place_investment", 201, body=invest, idempotency_key="inv-1")
    assert (placed.status, placed.quantity, placed.refund_amount) == ("pending_payment", "10", "0")
    confirmed = admin(
        "investments_and_transfers.confirm_payment",
        investment_id=placed.investment_id,
        body=admin.model("PaymentIn", payment_ref="wire-1"),
    )
    assert confirmed.status == "settled"
    settled_at = confirmed.position

    move = alice.model(
        "TransferIn", asset_id="CLIENT-01", from_investor_id="alice", to_investor_id="bob", quantity="4"
    )
    alice("investments_and_transfers.transfer", 201, body=move)

    declared = admin(
        "distributions_and_votes.declare_distribution",
        201,
        body=admin.model("DistributionIn", asset_id="CLIENT-01", amount="1000"),
    )
    paid = admin("distributions_and_votes.pay_distribution", distribution_id=declared.distribution_id)
    assert sorted(paid.paid_investor_ids) == ["alice", "bob"]

    proposal = admin.model(
        "ProposalIn", asset_id="CLIENT-01", title="Extend the term?", options=["yes", "no"], quorum_bps=5000
    )
    created = admin("distributions_and_votes.create_proposal", 201, body=proposal)
    vote = alice.model("VoteIn", investor_id="alice", option="yes")
    cast = alice("distributions_and_votes.cast_vote", 201, proposal_id=created.proposal_id, body=vote)
    assert cast.weight == "6"
    closed = admin("distributions_and_votes.close_proposal", proposal_id=created.proposal_id)
    assert closed.result == "yes"
    head = closed.position

    portfolio = alice("investors.get_portfolio", investor_id="alice", min_position=head)
    (position,) = portfolio.positions
    assert (position.asset_id, position.quantity, position.dividends_paid) == ("CLIENT-01", "6", "600")
    assert portfolio.as_of_position >= head

    then = auditor("assets.get_cap_table", asset_id="CLIENT-01", as_of=settled_at, min_position=head)
    assert [(h.investor_id, h.quantity, h.ownership_bps) for h in then.holders] == [("alice", "10", 10_000)]
    assert then.as_of_position == settled_at
    now = auditor("assets.get_cap_table", asset_id="CLIENT-01", min_position=head)
    assert [(h.investor_id, h.quantity) for h in now.holders] == [("alice", "6"), ("bob", "4")]

    distribution = auditor(
        "distributions_and_votes.get_distribution",
        distribution_id=declared.distribution_id,
        min_position=head,
    )
    assert {(e.investor_id, e.amount, e.paid) for e in distribution.entitlements} == {
        ("alice", "600", True),
        ("bob", "400", True),
    }
    tally = auditor(
        "distributions_and_votes.get_proposal", proposal_id=created.proposal_id, min_position=head
    )
    assert tally.tally.additional_properties == {"yes": "6", "no": "0"} and tally.quorum_reached

    events = auditor("audit.audit_events", asset_id="CLIENT-01", limit=1000)
    types = [event.type_ for event in events.events]
    assert types[0] == "Asset.Registered" and "Asset.TokensTransferred" in types
    assert all(event.hash_ and event.actor.principal.startswith("key:") for event in events.events)
    assert events.next_after == head  # the listing scanned to the end of the history
    assert auditor("audit.audit_verify").ok is True

    refused = alice("assets.get_cap_table", 403, asset_id="CLIENT-01")
    assert (refused.status, refused.code) == (403, "forbidden")

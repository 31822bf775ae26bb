"""Authentication and the role x endpoint matrix of SPEC 5.

admin: everything. auditor: every GET, no POST. investor: GET of its own portfolio, statement and
compliance and of the public asset data; its own votes; transfers from its own holdings
(not forced). Anything else is 403 `forbidden` and appends nothing; no or a bad key is 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.api.routers import audit
from tests.e2e.conftest import UNKNOWN_UUID as UNKNOWN
from tests.e2e.conftest import Api, assert_problem
from tests.support import wallet_for

M = "TOLL-JKT-01"
ADMIN, AUDITOR, SELF, OTHER = "admin", "auditor", "investor:alice", "investor:zed"
ACTORS = {ADMIN: "admin", AUDITOR: "auditor", SELF: "investor-self", OTHER: "investor-other"}
EVERYONE = frozenset(ACTORS)
READERS = frozenset({ADMIN, AUDITOR})
OWNERS = frozenset({ADMIN, AUDITOR, SELF})


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # the route as the app declares it
    path: str  # a concrete request about alice (or an asset / resource of the world)
    body: Any
    allowed: frozenset[str]


def post(template: str, path: str, body: Any = None, allowed: frozenset[str] = frozenset({ADMIN})) -> Route:
    return Route("POST", template, path, body, allowed)


def get(template: str, path: str, allowed: frozenset[str] = READERS) -> Route:
    return Route("GET", template, path, None, allowed)


NO_KEY = "0" * 16  # a key id no key has: the key routes answer 404 to admins, change nothing
TRANSFER = {"asset_id": M, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 1}
ROUTES: dict[str, Route] = {
    "register-asset": post(
        "/v1/assets",
        "/v1/assets",
        {
            "asset_id": "ROLE-01",
            "name": "n",
            "symbol": "s",
            "decimals": 0,
            "currency": "IDR",
            "unit_price": 1,
            "authorized_supply": 1,
            "min_investment": 1,
            "max_investment": 1,
        },
    ),
    "approve": post("/v1/assets/{asset_id}/approve", "/v1/assets/DRAFT-01/approve"),
    "offering": post("/v1/assets/{asset_id}/offering", "/v1/assets/CLOSED-01/offering", {"open": True}),
    "pause": post("/v1/assets/{asset_id}/pause", f"/v1/assets/{M}/pause"),
    "unpause": post("/v1/assets/{asset_id}/unpause", f"/v1/assets/{M}/unpause"),
    "bind-token": post(
        "/v1/assets/{asset_id}/token",
        "/v1/assets/CLOSED-01/token",
        {
            "chain_id": 1,
            "token_address": wallet_for("token"),
            "identity_registry": wallet_for("ir"),
        },
    ),
    "freeze-tokens": post(
        "/v1/assets/{asset_id}/holders/{investor_id}/freeze-tokens",
        f"/v1/assets/{M}/holders/alice/freeze-tokens",
        {"quantity": 1},
    ),
    "unfreeze-tokens": post(
        "/v1/assets/{asset_id}/holders/{investor_id}/unfreeze-tokens",
        f"/v1/assets/{M}/holders/alice/unfreeze-tokens",
        {"quantity": 1},
    ),
    "freeze": post(
        "/v1/assets/{asset_id}/holders/{investor_id}/freeze", f"/v1/assets/{M}/holders/alice/freeze"
    ),
    "unfreeze": post(
        "/v1/assets/{asset_id}/holders/{investor_id}/unfreeze", f"/v1/assets/{M}/holders/alice/unfreeze"
    ),
    "register-investor": post(
        "/v1/investors", "/v1/investors", {"investor_id": "yan", "country": "ID", "wallet": wallet_for("yan")}
    ),
    "kyc": post("/v1/investors/{investor_id}/kyc", "/v1/investors/alice/kyc", {"status": "approved"}),
    "add-wallet": post(
        "/v1/investors/{investor_id}/wallets", "/v1/investors/alice/wallets", {"wallet": wallet_for("a2")}
    ),
    "recover": post(
        "/v1/investors/{investor_id}/recover",
        "/v1/investors/alice/recover",
        {"lost_wallet": wallet_for("alice"), "new_wallet": wallet_for("a3")},
    ),
    "invest": post(
        "/v1/investments", "/v1/investments", {"investor_id": "alice", "asset_id": M, "amount": 100_000}
    ),
    "confirm-payment": post(
        "/v1/investments/{investment_id}/confirm-payment",
        "/v1/investments/{settled}/confirm-payment",
        {"payment_ref": "p"},
    ),
    "cancel": post("/v1/investments/{investment_id}/cancel", "/v1/investments/{settled}/cancel"),
    "transfer": post("/v1/transfers", "/v1/transfers", TRANSFER, frozenset({ADMIN, SELF})),
    "forced-transfer": post("/v1/transfers", "/v1/transfers", {**TRANSFER, "forced": True}),
    "redeem": post(
        "/v1/redemptions", "/v1/redemptions", {"asset_id": M, "investor_id": "alice", "quantity": 1}
    ),
    "declare-distribution": post("/v1/distributions", "/v1/distributions", {"asset_id": M, "amount": 10}),
    "pay-distribution": post(
        "/v1/distributions/{distribution_id}/pay", "/v1/distributions/{paid_distribution}/pay"
    ),
    "create-proposal": post(
        "/v1/proposals",
        "/v1/proposals",
        {"asset_id": M, "title": "t", "options": ["a", "b"], "quorum_bps": 1},
    ),
    "vote": post(
        "/v1/proposals/{proposal_id}/votes",
        "/v1/proposals/{open_proposal}/votes",
        {"investor_id": "alice", "option": "no"},
        frozenset({ADMIN, SELF}),
    ),
    "close-proposal": post("/v1/proposals/{proposal_id}/close", "/v1/proposals/{open_proposal}/close"),
    "record-valuation": post(
        "/v1/assets/{asset_id}/valuations",
        f"/v1/assets/{M}/valuations",
        {"price_per_token": 1, "valued_at": "2026-01-01T00:00:00Z", "source": "s"},
    ),
    "get-valuations": get("/v1/assets/{asset_id}/valuations", f"/v1/assets/{M}/valuations", EVERYONE),
    "get-portfolio-history": get(
        "/v1/investors/{investor_id}/portfolio/history", "/v1/investors/alice/portfolio/history", OWNERS
    ),
    "get-asset": get("/v1/assets/{asset_id}", f"/v1/assets/{M}", EVERYONE),
    "list-assets": get("/v1/assets", "/v1/assets", EVERYONE),
    "list-investors": get("/v1/investors", "/v1/investors"),
    "investor-statement": get(
        "/v1/investors/{investor_id}/transactions", "/v1/investors/alice/transactions", OWNERS
    ),
    "asset-statement": get("/v1/assets/{asset_id}/transactions", f"/v1/assets/{M}/transactions"),
    "list-distributions": get("/v1/assets/{asset_id}/distributions", f"/v1/assets/{M}/distributions"),
    "list-proposals": get("/v1/assets/{asset_id}/proposals", f"/v1/assets/{M}/proposals"),
    "list-investments": get("/v1/assets/{asset_id}/investments", f"/v1/assets/{M}/investments"),
    "get-cap-table": get("/v1/assets/{asset_id}/cap-table", f"/v1/assets/{M}/cap-table"),
    "get-asset-compliance": get("/v1/assets/{asset_id}/compliance", f"/v1/assets/{M}/compliance"),
    "get-investor": get("/v1/investors/{investor_id}", "/v1/investors/alice"),
    "get-portfolio": get("/v1/investors/{investor_id}/portfolio", "/v1/investors/alice/portfolio", OWNERS),
    "get-investor-compliance": get(
        "/v1/investors/{investor_id}/compliance", "/v1/investors/alice/compliance", OWNERS
    ),
    "get-investment": get("/v1/investments/{investment_id}", "/v1/investments/{settled}"),
    "get-distribution": get("/v1/distributions/{distribution_id}", "/v1/distributions/{paid_distribution}"),
    "get-proposal": get("/v1/proposals/{proposal_id}", "/v1/proposals/{open_proposal}"),
    "reconcile": post("/v1/reconciliations", "/v1/reconciliations", {"asset_id": M}),
    "get-reconciliation": get("/v1/reconciliations/{reconciliation_id}", f"/v1/reconciliations/{UNKNOWN}"),
    "get-latest-reconciliation": get(
        "/v1/assets/{asset_id}/reconciliations/latest", f"/v1/assets/{M}/reconciliations/latest"
    ),
    "audit-events": get("/v1/audit/events", "/v1/audit/events"),
    "audit-verify": get("/v1/audit/verify", "/v1/audit/verify"),
    "inclusion-proof": get("/v1/audit/proofs/inclusion", "/v1/audit/proofs/inclusion?position=1"),
    "consistency-proof": get("/v1/audit/proofs/consistency", "/v1/audit/proofs/consistency?from_size=1"),
    "signed-heads": get("/v1/audit/heads", "/v1/audit/heads"),
    "stream": get("/v1/stream", "/v1/stream"),
    "create-key": post("/v1/keys", "/v1/keys", {"role": "auditor"}),
    "list-keys": get("/v1/keys", "/v1/keys", frozenset({ADMIN})),
    "get-key": get("/v1/keys/{key_id}", f"/v1/keys/{NO_KEY}", frozenset({ADMIN})),
    "rotate-key": post("/v1/keys/{key_id}/rotate", f"/v1/keys/{NO_KEY}/rotate"),
    "revoke-key": post("/v1/keys/{key_id}/revoke", f"/v1/keys/{NO_KEY}/revoke"),
}
UNAUTHENTICATED = ("/healthz", "/readyz", "/metrics")


def call(api: Api, route: Route, ids: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    path = route.path.format(**ids)
    if route.template == "/v1/stream":  # endless: look at the status and headers only
        with api.client.stream("GET", path, headers=headers) as response:
            if response.status_code != 200:
                response.read()  # a problem body: short
            return response
    if route.method == "GET":
        return api.client.get(path, headers=headers)
    if route.body is None:
        return api.client.post(path, headers=headers)
    return api.client.post(path, json=route.body, headers=headers)


@pytest.fixture(autouse=True)
def _quick_stream_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "HEARTBEAT_SECONDS", 0.1)


def test_the_matrix_covers_every_route_of_the_app(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world
    paths = api.client.get("/openapi.json").json()["paths"]
    declared = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path not in UNAUTHENTICATED
        for method in operations
    }
    assert declared == {(r.method, r.template) for r in ROUTES.values()}


MATRIX = [
    pytest.param(name, actor, id=f"{name}-{label}") for name in ROUTES for actor, label in ACTORS.items()
]


@pytest.mark.parametrize(("name", "actor"), MATRIX)
def test_role_matrix(world: tuple[Api, dict[str, str]], name: str, actor: str) -> None:
    api, ids = world
    route = ROUTES[name]
    head = api.head()
    response = call(api, route, ids, api.headers(actor))
    if actor in route.allowed:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
    else:
        body = assert_problem(response, 403, "forbidden")
        assert api.key(actor) not in body["detail"]
        assert api.head() == head


def _bad_credentials(api: Api) -> dict[str, dict[str, str]]:
    admin = api.key("admin")
    key_id = admin.split("_")[1]
    return {
        "missing": {},
        "not-a-key": {"Authorization": "Bearer nonsense"},
        "empty-bearer": {"Authorization": "Bearer "},
        "wrong-secret": {"Authorization": f"Bearer lk_{key_id}_{'x' * 43}"},
        "unknown-key-id": {"Authorization": f"Bearer lk_{'0' * 16}_{admin.split('_', 2)[2]}"},
        "basic-scheme": {"Authorization": f"Basic {admin}"},
        "key-without-scheme": {"Authorization": admin},
    }


CREDENTIALS = [
    "missing",
    "not-a-key",
    "empty-bearer",
    "wrong-secret",
    "unknown-key-id",
    "basic-scheme",
    "key-without-scheme",
]


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("name", ROUTES)
def test_no_or_a_bad_key_is_401(world: tuple[Api, dict[str, str]], name: str, credentials: str) -> None:
    api, ids = world
    head = api.head()
    response = call(api, ROUTES[name], ids, _bad_credentials(api)[credentials])
    body = assert_problem(response, 401, "unauthorized")
    assert api.key("admin") not in body["detail"]
    assert api.head() == head


def test_authentication_comes_before_input_validation(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world
    response = api.client.post("/v1/investments", json={"amount": 1.5})
    assert_problem(response, 401, "unauthorized")


def test_an_investor_may_not_act_for_another_investor(world: tuple[Api, dict[str, str]]) -> None:
    """Spot checks beside the matrix: bob's key, alice's resources."""
    api, ids = world
    head = api.head()
    bob = "investor:bob"
    assert_problem(api.post("/v1/transfers", TRANSFER, who=bob), 403, "forbidden")
    assert_problem(
        api.post(
            f"/v1/proposals/{ids['open_proposal']}/votes", {"investor_id": "alice", "option": "no"}, who=bob
        ),
        403,
        "forbidden",
    )
    assert_problem(api.get("/v1/investors/alice/portfolio", who=bob), 403, "forbidden")
    # at the head: right after `world` is built bob may not be in the read models yet (a 404)
    assert api.get("/v1/investors/bob/portfolio", who=bob, min_position=head).status_code == 200
    assert api.get("/v1/investors/bob/compliance", who=bob, min_position=head).status_code == 200
    assert_problem(api.get("/v1/investors/bob", who=bob), 403, "forbidden")
    assert api.head() == head


def test_an_investor_transfers_and_votes_for_itself(world: tuple[Api, dict[str, str]]) -> None:
    api, ids = world
    transfer = {"asset_id": M, "from_investor_id": "bob", "to_investor_id": "alice", "quantity": 2}
    response = api.post("/v1/transfers", transfer, who="investor:bob")
    assert response.status_code == 201, response.text
    proposal = api.ok("/v1/proposals", {"asset_id": M, "title": "t", "options": ["a", "b"], "quorum_bps": 1})
    vote = api.post(
        f"/v1/proposals/{proposal['proposal_id']}/votes",
        {"investor_id": "bob", "option": "a"},
        who="investor:bob",
    )
    assert vote.status_code == 201, vote.text
    assert ids


def test_health_readiness_and_metrics_need_no_key(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world
    for path in ("/healthz", "/readyz", "/metrics"):
        assert api.client.get(path).status_code == 200, path

"""Every rejection of SPEC 4.3-4.5 and 5 reachable over HTTP, each appending nothing.

One shared ledger (`world`, see conftest) holds a situation for every rule; since a
rejected command never changes it, each case runs on the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import UNKNOWN_UUID, Api, assert_problem
from tests.support import wallet_for

M = "TOLL-JKT-01"  # the main asset of the world


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Any
    status: int
    code: str


def invest(investor_id: str, asset_id: str, amount: Any) -> dict[str, Any]:
    return {"investor_id": investor_id, "asset_id": asset_id, "amount": amount}


def transfer(frm: str, to: str, quantity: Any, asset_id: str = M, **extra: Any) -> dict[str, Any]:
    return {
        "asset_id": asset_id,
        "from_investor_id": frm,
        "to_investor_id": to,
        "quantity": quantity,
        **extra,
    }


def vote(investor_id: str, option: str) -> dict[str, Any]:
    return {"investor_id": investor_id, "option": option}


def rule(code: str, method: str, path: str, body: Any = None) -> Case:
    return Case(method, path, body, 422, code)


def investing(code: str, investor_id: str, asset_id: str, amount: Any) -> Case:
    return rule(code, "POST", "/v1/investments", invest(investor_id, asset_id, amount))


def transferring(code: str, frm: str, to: str, quantity: Any, asset_id: str = M, **extra: Any) -> Case:
    return rule(code, "POST", "/v1/transfers", transfer(frm, to, quantity, asset_id, **extra))


def voting(code: str, proposal: str, investor_id: str, option: str) -> Case:
    return rule(code, "POST", f"/v1/proposals/{{{proposal}}}/votes", vote(investor_id, option))


HOLDER = f"/v1/assets/{M}/holders"
RULES: dict[str, Case] = {
    # ----- 4.3 investments, in the order of the contract -----
    "asset_not_offering-draft": investing("asset_not_offering", "alice", "DRAFT-01", 100_000),
    "asset_not_offering-closed": investing("asset_not_offering", "alice", "CLOSED-01", 100_000),
    "investor_not_eligible-kyc": investing("investor_not_eligible", "erin", M, 100_000),
    "investor_not_eligible-country": investing("investor_not_eligible", "frank", M, 100_000),
    "investor_not_eligible-accredited": investing("investor_not_eligible", "alice", "ACCR-01", 100_000),
    "amount_below_minimum": investing("amount_below_minimum", "alice", M, 99_999),
    "amount_above_maximum": investing("amount_above_maximum", "alice", M, "1000000001"),
    "amount_too_small": investing("amount_too_small", "alice", "PRICY-01", 999_999),
    "authorized_supply_exceeded": investing("authorized_supply_exceeded", "alice", M, 10_100_000),
    "max_holders_exceeded-investment": investing("max_holders_exceeded", "dave", M, 100_000),
    "max_balance_exceeded-investment": investing("max_balance_exceeded", "alice", M, 1_100_000),
    # when several rules fail, the one listed first wins
    "first-wins-not_offering-over-not_eligible": investing("asset_not_offering", "erin", "DRAFT-01", 1),
    "first-wins-not_eligible-over-below_minimum": investing("investor_not_eligible", "erin", M, 1),
    "first-wins-supply-over-max_balance": investing("authorized_supply_exceeded", "alice", M, 50_000_000),
    "invalid_state-confirm-twice": rule(
        "invalid_state", "POST", "/v1/investments/{settled}/confirm-payment", {"payment_ref": "again"}
    ),
    "invalid_state-confirm-cancelled": rule(
        "invalid_state", "POST", "/v1/investments/{cancelled}/confirm-payment", {"payment_ref": "late"}
    ),
    "invalid_state-cancel-settled": rule("invalid_state", "POST", "/v1/investments/{settled}/cancel"),
    # ----- 4.3 transfers, in the order of the contract -----
    "invalid_quantity-zero": transferring("invalid_quantity", "alice", "bob", 0),
    "invalid_quantity-negative": transferring("invalid_quantity", "alice", "bob", -1),
    "same_investor": transferring("same_investor", "alice", "alice", 1),
    # alice is also address-frozen on PAUSED-01: the pause, listed first, wins
    "asset_paused": transferring("asset_paused", "alice", "bob", 1, "PAUSED-01"),
    "investor_frozen-sender": transferring("investor_frozen", "carol", "alice", 1),
    "investor_frozen-receiver": transferring("investor_frozen", "alice", "carol", 1),
    "insufficient_balance": transferring("insufficient_balance", "alice", "bob", "141"),
    "insufficient_balance-lockup": transferring("insufficient_balance", "alice", "bob", 1, "LOCK-01"),
    "investor_not_eligible-receiver": transferring("investor_not_eligible", "alice", "erin", 1),
    "max_holders_exceeded-transfer": transferring("max_holders_exceeded", "alice", "dave", 1),
    "max_balance_exceeded-transfer": transferring("max_balance_exceeded", "alice", "bob", 101),
    "first-wins-quantity-over-same_investor": transferring("invalid_quantity", "alice", "alice", 0),
    "first-wins-frozen-over-not_eligible": transferring("investor_frozen", "carol", "erin", 1),
    "first-wins-insufficient-over-max_balance": transferring("insufficient_balance", "alice", "bob", 145),
    "first-wins-not_eligible-over-max_holders": transferring("investor_not_eligible", "alice", "frank", 1),
    # forced transfers and redemptions: only the balance rule
    "forced-insufficient_balance": transferring("insufficient_balance", "alice", "bob", 141, forced=True),
    "forced-invalid_quantity": transferring("invalid_quantity", "alice", "bob", 0, forced=True),
    "redemption-insufficient_balance": rule(
        "insufficient_balance",
        "POST",
        "/v1/redemptions",
        {"asset_id": M, "investor_id": "alice", "quantity": 141},
    ),
    "redemption-invalid_quantity": rule(
        "invalid_quantity", "POST", "/v1/redemptions", {"asset_id": M, "investor_id": "alice", "quantity": 0}
    ),
    # freezes
    "freeze-tokens-insufficient_balance": rule(
        "insufficient_balance", "POST", f"{HOLDER}/alice/freeze-tokens", {"quantity": 141}
    ),
    "freeze-tokens-invalid_quantity": rule(
        "invalid_quantity", "POST", f"{HOLDER}/alice/freeze-tokens", {"quantity": 0}
    ),
    "unfreeze-tokens-invalid_quantity": rule(
        "invalid_quantity", "POST", f"{HOLDER}/alice/unfreeze-tokens", {"quantity": 1}
    ),
    "invalid_state-address-freeze-twice": rule("invalid_state", "POST", f"{HOLDER}/carol/freeze"),
    "invalid_state-approve-twice": rule("invalid_state", "POST", f"/v1/assets/{M}/approve"),
    "invalid_state-unpause-running": rule("invalid_state", "POST", f"/v1/assets/{M}/unpause"),
    # ----- 4.4 distributions -----
    "invalid_state-pay-twice": rule("invalid_state", "POST", "/v1/distributions/{paid_distribution}/pay"),
    "invalid_state-pay-investor-twice": rule(
        "invalid_state", "POST", "/v1/distributions/{paid_distribution}/pay", {"investor_id": "alice"}
    ),
    # ----- 4.5 votes, in the order of the contract -----
    "no_voting_power": voting("no_voting_power", "open_proposal", "dave", "yes"),
    "already_voted": voting("already_voted", "open_proposal", "alice", "no"),
    "proposal_closed": voting("proposal_closed", "closed_proposal", "bob", "yes"),
    "proposal_closed-deadline": voting("proposal_closed", "expired_proposal", "bob", "yes"),
    "invalid_option": voting("invalid_option", "open_proposal", "bob", "maybe"),
    "proposal_closed-close-twice": rule("proposal_closed", "POST", "/v1/proposals/{closed_proposal}/close"),
    "first-wins-no_power-over-closed": voting("no_voting_power", "closed_proposal", "dave", "maybe"),
    "first-wins-already_voted-over-option": voting("already_voted", "open_proposal", "alice", "maybe"),
}

SPEC_CODES = {
    "asset_not_offering",
    "investor_not_eligible",
    "amount_below_minimum",
    "amount_above_maximum",
    "amount_too_small",
    "authorized_supply_exceeded",
    "max_holders_exceeded",
    "max_balance_exceeded",
    "invalid_state",
    "invalid_quantity",
    "same_investor",
    "asset_paused",
    "investor_frozen",
    "insufficient_balance",
    "no_voting_power",
    "already_voted",
    "proposal_closed",
    "invalid_option",
}


def invalid(method: str, path: str, body: Any = None) -> Case:
    return Case(method, path, body, 422, "validation_error")


ASSET = {
    "asset_id": "NEW-01",
    "name": "New",
    "symbol": "N",
    "decimals": 0,
    "currency": "IDR",
    "unit_price": 100_000,
    "authorized_supply": 1000,
    "min_investment": 1,
    "max_investment": 10**9,
}
VALIDATION: dict[str, Case] = {
    "amount-float": invalid("POST", "/v1/investments", invest("alice", M, 250000.0)),
    "amount-float-string": invalid("POST", "/v1/investments", invest("alice", M, "250000.5")),
    "amount-exponent-string": invalid("POST", "/v1/investments", invest("alice", M, "2.5e5")),
    "amount-boolean": invalid("POST", "/v1/investments", invest("alice", M, True)),
    "amount-negative-string": invalid("POST", "/v1/investments", invest("alice", M, "-100000")),
    "amount-41-digits": invalid("POST", "/v1/investments", invest("alice", M, "1" * 41)),
    "amount-null": invalid("POST", "/v1/investments", invest("alice", M, None)),
    "amount-missing": invalid("POST", "/v1/investments", {"investor_id": "alice", "asset_id": M}),
    "unknown-field": invalid("POST", "/v1/investments", {**invest("alice", M, 100_000), "fee": 1}),
    "body-array": invalid("POST", "/v1/investments", [invest("alice", M, 100_000)]),
    "body-missing": invalid("POST", "/v1/investments"),
    "quantity-float": invalid("POST", "/v1/transfers", transfer("alice", "bob", 1.0)),
    "quantity-boolean": invalid("POST", "/v1/transfers", transfer("alice", "bob", True)),
    "quantity-text": invalid("POST", "/v1/transfers", transfer("alice", "bob", "one")),
    "forced-string": invalid("POST", "/v1/transfers", transfer("alice", "bob", 1, forced="yes")),
    "validation-before-rules": invalid("POST", "/v1/transfers", transfer("alice", "alice", 0.5)),
    "freeze-quantity-boolean": invalid(
        "POST", f"/v1/assets/{M}/holders/alice/freeze-tokens", {"quantity": False}
    ),
    "redemption-quantity-float": invalid(
        "POST", "/v1/redemptions", {"asset_id": M, "investor_id": "alice", "quantity": 1.5}
    ),
    "distribution-amount-float": invalid("POST", "/v1/distributions", {"asset_id": M, "amount": 10.0}),
    "distribution-amount-zero": invalid("POST", "/v1/distributions", {"asset_id": M, "amount": 0}),
    "distribution-record-beyond-head": invalid(
        "POST", "/v1/distributions", {"asset_id": M, "amount": 10, "record_position": 10**9}
    ),
    "asset_id-lowercase-body": invalid("POST", "/v1/investments", invest("alice", "toll-jkt-01", 100_000)),
    "investor_id-bad-body": invalid("POST", "/v1/investments", invest("al ice!", M, 100_000)),
    "asset_id-bad-path": invalid("POST", "/v1/assets/toll_jkt/approve"),
    "investor_id-bad-path": invalid("POST", "/v1/investors/-alice/kyc", {"status": "approved"}),
    "investment_id-bad-path": invalid(
        "POST", "/v1/investments/not-a-uuid/confirm-payment", {"payment_ref": "p"}
    ),
    "distribution_id-bad-path": invalid("POST", "/v1/distributions/12345/pay"),
    "proposal_id-bad-path": invalid("POST", "/v1/proposals/xyz/votes", vote("alice", "yes")),
    "get-asset-bad-id": invalid("GET", "/v1/assets/bad_id"),
    "get-investor-bad-id": invalid("GET", "/v1/investors/bad%20id"),
    "get-investment-bad-id": invalid("GET", "/v1/investments/not-a-uuid"),
    "get-proposal-bad-id": invalid("GET", "/v1/proposals/not-a-uuid"),
    "get-min_position-negative": invalid("GET", f"/v1/assets/{M}?min_position=-1"),
    "get-min_position-text": invalid("GET", f"/v1/assets/{M}?min_position=head"),
    "audit-limit-zero": invalid("GET", "/v1/audit/events?limit=0"),
    "audit-bad-asset-filter": invalid("GET", "/v1/audit/events?asset_id=lower"),
    "kyc-unknown-status": invalid("POST", "/v1/investors/alice/kyc", {"status": "maybe"}),
    "kyc-bad-expiry": invalid(
        "POST", "/v1/investors/alice/kyc", {"status": "approved", "expires_at": "tomorrow"}
    ),
    "kyc-expiry-without-offset": invalid(
        "POST", "/v1/investors/alice/kyc", {"status": "approved", "expires_at": "2030-01-01T00:00:00"}
    ),
    "wallet-short": invalid("POST", "/v1/investors/alice/wallets", {"wallet": "0x1234"}),
    "investor-country-unknown": invalid(
        "POST", "/v1/investors", {"investor_id": "zoe", "country": "XX", "wallet": wallet_for("zoe")}
    ),
    "investor-country-lowercase": invalid(
        "POST", "/v1/investors", {"investor_id": "zoe", "country": "id", "wallet": wallet_for("zoe")}
    ),
    "investor-accredited-string": invalid(
        "POST",
        "/v1/investors",
        {"investor_id": "zoe", "country": "ID", "wallet": wallet_for("zoe"), "accredited": "no"},
    ),
    "asset-decimals-19": invalid("POST", "/v1/assets", {**ASSET, "decimals": 19}),
    "asset-decimals-string": invalid("POST", "/v1/assets", {**ASSET, "decimals": "0"}),
    "asset-currency-unknown": invalid("POST", "/v1/assets", {**ASSET, "currency": "XYZ"}),
    "asset-max-below-min": invalid(
        "POST", "/v1/assets", {**ASSET, "min_investment": 10, "max_investment": 5}
    ),
    "asset-unit_price-float": invalid("POST", "/v1/assets", {**ASSET, "unit_price": 1e5}),
    "asset-missing-name": invalid("POST", "/v1/assets", {k: v for k, v in ASSET.items() if k != "name"}),
    "offering-open-string": invalid("POST", f"/v1/assets/{M}/offering", {"open": "true"}),
    "token-bad-address": invalid(
        "POST",
        "/v1/assets/CLOSED-01/token",
        {"chain_id": 1, "token_address": "0xzz", "identity_registry": wallet_for("r")},
    ),
    "token-chain_id-float": invalid(
        "POST",
        "/v1/assets/CLOSED-01/token",
        {"chain_id": 1.0, "token_address": wallet_for("t"), "identity_registry": wallet_for("r")},
    ),
    "proposal-one-option": invalid(
        "POST", "/v1/proposals", {"asset_id": M, "title": "t", "options": ["yes"], "quorum_bps": 1}
    ),
    "proposal-duplicate-options": invalid(
        "POST", "/v1/proposals", {"asset_id": M, "title": "t", "options": ["a", "a"], "quorum_bps": 1}
    ),
    "proposal-quorum-too-high": invalid(
        "POST", "/v1/proposals", {"asset_id": M, "title": "t", "options": ["a", "b"], "quorum_bps": 10_001}
    ),
    "proposal-blank-title": invalid(
        "POST", "/v1/proposals", {"asset_id": M, "title": "  ", "options": ["a", "b"], "quorum_bps": 1}
    ),
    "payment_ref-nul": invalid(
        "POST", "/v1/investments/{cancelled}/confirm-payment", {"payment_ref": "a\u0000b"}
    ),
}

NOT_FOUND: dict[str, Case] = {
    "approve-unknown-asset": Case("POST", "/v1/assets/NOPE-01/approve", None, 404, "not_found"),
    "kyc-unknown-investor": Case(
        "POST", "/v1/investors/nobody/kyc", {"status": "approved"}, 404, "not_found"
    ),
    "invest-unknown-investor": Case(
        "POST", "/v1/investments", invest("nobody", M, 100_000), 404, "not_found"
    ),
    "invest-unknown-asset": Case(
        "POST", "/v1/investments", invest("alice", "NOPE-01", 100_000), 404, "not_found"
    ),
    "confirm-unknown-investment": Case(
        "POST", f"/v1/investments/{UNKNOWN_UUID}/confirm-payment", {"payment_ref": "p"}, 404, "not_found"
    ),
    "cancel-a-proposal-as-investment": Case(
        "POST", "/v1/investments/{open_proposal}/cancel", None, 404, "not_found"
    ),
    "transfer-to-unknown": Case("POST", "/v1/transfers", transfer("alice", "nobody", 1), 404, "not_found"),
    "freeze-unknown-holder": Case("POST", f"/v1/assets/{M}/holders/nobody/freeze", None, 404, "not_found"),
    "pay-unknown-distribution": Case("POST", f"/v1/distributions/{UNKNOWN_UUID}/pay", None, 404, "not_found"),
    "pay-investor-without-entitlement": Case(
        "POST", "/v1/distributions/{paid_distribution}/pay", {"investor_id": "dave"}, 404, "not_found"
    ),
    "vote-unknown-proposal": Case(
        "POST", f"/v1/proposals/{UNKNOWN_UUID}/votes", vote("alice", "yes"), 404, "not_found"
    ),
    "close-unknown-proposal": Case("POST", f"/v1/proposals/{UNKNOWN_UUID}/close", None, 404, "not_found"),
    "recover-foreign-wallet": Case(
        "POST",
        "/v1/investors/alice/recover",
        {"lost_wallet": wallet_for("bob"), "new_wallet": wallet_for("new")},
        404,
        "not_found",
    ),
    "get-unknown-asset": Case("GET", "/v1/assets/NOPE-01", None, 404, "not_found"),
    "get-unknown-cap-table": Case("GET", "/v1/assets/NOPE-01/cap-table", None, 404, "not_found"),
    "get-unknown-asset-compliance": Case("GET", "/v1/assets/NOPE-01/compliance", None, 404, "not_found"),
    "get-unknown-investor": Case("GET", "/v1/investors/nobody", None, 404, "not_found"),
    "get-unknown-portfolio": Case("GET", "/v1/investors/nobody/portfolio", None, 404, "not_found"),
    "get-unknown-investor-compliance": Case("GET", "/v1/investors/nobody/compliance", None, 404, "not_found"),
    "get-unknown-investment": Case("GET", f"/v1/investments/{UNKNOWN_UUID}", None, 404, "not_found"),
    "get-unknown-distribution": Case("GET", f"/v1/distributions/{UNKNOWN_UUID}", None, 404, "not_found"),
    "get-unknown-proposal": Case("GET", f"/v1/proposals/{UNKNOWN_UUID}", None, 404, "not_found"),
    "unknown-route": Case("GET", "/v1/nothing-here", None, 404, "not_found"),
    "already_exists-asset": Case("POST", "/v1/assets", {**ASSET, "asset_id": M}, 409, "already_exists"),
    "already_exists-investor": Case(
        "POST",
        "/v1/investors",
        {"investor_id": "alice", "country": "ID", "wallet": wallet_for("zoe")},
        409,
        "already_exists",
    ),
    "already_exists-claimed-wallet": Case(
        "POST",
        "/v1/investors",
        {"investor_id": "zoe", "country": "ID", "wallet": wallet_for("alice")},
        409,
        "already_exists",
    ),
    "already_exists-wallet-of-another": Case(
        "POST", "/v1/investors/alice/wallets", {"wallet": wallet_for("bob")}, 409, "already_exists"
    ),
    "already_exists-own-wallet": Case(
        "POST", "/v1/investors/alice/wallets", {"wallet": wallet_for("alice").lower()}, 409, "already_exists"
    ),
    "already_exists-recover-to-claimed": Case(
        "POST",
        "/v1/investors/alice/recover",
        {"lost_wallet": wallet_for("alice"), "new_wallet": wallet_for("bob")},
        409,
        "already_exists",
    ),
}


def send(api: Api, case: Case, ids: dict[str, str]) -> Any:
    path = case.path.format(**ids)
    if case.method == "GET":
        return api.get(path)
    return api.post(path, case.body)


@pytest.mark.parametrize("case", RULES.values(), ids=RULES.keys())
def test_each_rule_is_a_422_with_its_code_and_appends_nothing(
    world: tuple[Api, dict[str, str]], case: Case
) -> None:
    api, ids = world
    head, checked = api.head(), api.events_checked()
    assert_problem(send(api, case, ids), case.status, case.code)
    assert api.head() == head
    assert api.events_checked() == checked


def test_every_rule_code_of_the_spec_is_covered() -> None:
    assert {case.code for case in RULES.values()} == SPEC_CODES


@pytest.mark.parametrize("case", VALIDATION.values(), ids=VALIDATION.keys())
def test_invalid_input_is_a_422_validation_error_and_appends_nothing(
    world: tuple[Api, dict[str, str]], case: Case
) -> None:
    api, ids = world
    head = api.head()
    assert_problem(send(api, case, ids), 422, "validation_error")
    assert api.head() == head


@pytest.mark.parametrize("case", NOT_FOUND.values(), ids=NOT_FOUND.keys())
def test_unknown_resources_are_404_and_existing_ids_409(
    world: tuple[Api, dict[str, str]], case: Case
) -> None:
    api, ids = world
    head = api.head()
    assert_problem(send(api, case, ids), case.status, case.code)
    assert api.head() == head


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"investor_id": "alice", "asset_id": ', b"", b"null", b"12"],
    ids=["not-json", "truncated", "empty", "null", "number"],
)
def test_malformed_json_is_a_422_validation_error(world: tuple[Api, dict[str, str]], content: bytes) -> None:
    api, _ = world
    head = api.head()
    headers = {**api.headers("admin"), "Content-Type": "application/json"}
    assert_problem(
        api.client.post("/v1/investments", content=content, headers=headers), 422, "validation_error"
    )
    assert api.head() == head


def test_a_body_that_is_not_utf8_is_a_422_validation_error(world: tuple[Api, dict[str, str]]) -> None:
    """Regression: FastAPI's own 400 'There was an error parsing the body' (undocumented)."""
    api, _ = world
    headers = {**api.headers("admin"), "Content-Type": "application/json"}
    response = api.client.post("/v1/investments", content=b'{"amount": "\xff"}', headers=headers)
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("where", ["kyc-expires_at", "proposal-closes_at"])
def test_a_timestamp_out_of_range_is_a_validation_error(
    world: tuple[Api, dict[str, str]], where: str, stamp: str
) -> None:
    """Regression: converting such a timestamp to UTC overflowed into a 500."""
    api, _ = world
    head = api.head()
    if where == "kyc-expires_at":  # validation comes first; the unknown ids keep the world as it is
        response = api.post("/v1/investors/nobody/kyc", {"status": "approved", "expires_at": stamp})
    else:
        proposal = {"asset_id": "NOPE-01", "title": "t", "options": ["a", "b"], "quorum_bps": 1}
        response = api.post("/v1/proposals", {**proposal, "closes_at": stamp})
    assert_problem(response, 422, "validation_error")
    assert api.head() == head


@pytest.mark.parametrize("key", ["", " ", "k" * 201], ids=["empty", "blank", "too-long"])
def test_an_invalid_idempotency_key_is_a_validation_error(
    world: tuple[Api, dict[str, str]], key: str
) -> None:
    api, _ = world
    head = api.head()
    response = api.client.post(
        f"/v1/assets/{M}/unpause", headers={**api.headers("admin"), "Idempotency-Key": key}
    )
    assert_problem(response, 422, "validation_error")
    assert api.head() == head


def test_problem_bodies_never_echo_the_api_key(world: tuple[Api, dict[str, str]]) -> None:
    api, _ = world
    key = api.key("admin")
    for response in (
        api.post("/v1/transfers", transfer("alice", "bob", 0)),
        api.post("/v1/investments", invest("alice", M, 1.5)),
        api.client.get("/v1/assets/TOLL-JKT-01", headers={"Authorization": f"Bearer {key}x"}),
    ):
        assert response.status_code in (401, 422)
        assert key not in response.text
        assert key.split("_", 2)[2] not in response.text  # the secret (it may itself contain "_")

"""The rules of SPEC 4.3-4.5 and section 5 through the application service, on SQLite and PostgreSQL.

Every refused command raises the `LedgerError` of its contract code and appends
nothing: the head position does not move and the hash chain still verifies.
Refusals that need no state of their own share one ledger per test (they cannot
change it); rules that need their own terms or history get a ledger each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from ledger.application import LedgerApplication
from ledger.domain.values import wallet as checksummed
from ledger.errors import LedgerError
from tests.conftest import FakeClock
from tests.support import ASSET_TERMS, holding, onboard, open_asset, wallet_for

pytestmark = pytest.mark.integration

ASSET = str(ASSET_TERMS["asset_id"])
OTHER = "WATER-SBY-02"
NEW_WALLET = wallet_for("zed")
Setup = Callable[[LedgerApplication], Any]
Action = Callable[[LedgerApplication, Any], object]


@contextmanager
def refused(app: LedgerApplication, code: str) -> Iterator[None]:
    """The command run in the block is refused with `code` and the ledger appends nothing."""
    head = app.admin.head_position()
    with pytest.raises(LedgerError) as info:
        yield
    assert info.value.code == code, f"{info.value.code}: {info.value.detail}"
    assert app.admin.head_position() == head
    assert app.admin.verify().ok


def assert_each_refused(
    app: LedgerApplication, code: str, cases: dict[str, Action], given: Any = None
) -> None:
    """Runs every case on the same ledger; lists all the cases not refused with `code`."""
    wrong: dict[str, str] = {}
    for name, action in cases.items():
        try:
            with refused(app, code):
                action(app, given)
        except (Exception, pytest.fail.Exception) as failure:
            wrong[name] = f"{type(failure).__name__}: {failure}"
    assert not wrong, "\n".join(f"{name}: {why}" for name, why in wrong.items())


def market(app: LedgerApplication, **terms: Any) -> None:
    """An open offering; alice (ID, accredited) holds 10 tokens, bob (SG) is onboarded with none."""
    open_asset(app, **terms)
    onboard(app, "alice", accredited=True)
    onboard(app, "bob", country="SG")
    holding(app, ASSET, "alice", 10)


def nothing(app: LedgerApplication) -> None:
    return None


def new_proposal(app: LedgerApplication, closes_at: Any = None) -> str:
    outcome = app.create_proposal(ASSET, "Extend the concession?", ["yes", "no"], 5_000, closes_at)
    return str(outcome.result["proposal_id"])


def voted_proposal(app: LedgerApplication) -> str:
    proposal_id = new_proposal(app)
    app.cast_vote(proposal_id, "alice", "yes")
    return proposal_id


def closed_proposal(app: LedgerApplication) -> str:
    proposal_id = new_proposal(app)
    app.close_proposal(proposal_id)
    return proposal_id


def voted_and_closed_proposal(app: LedgerApplication) -> str:
    proposal_id = voted_proposal(app)
    app.close_proposal(proposal_id)
    return proposal_id


def pending_investment(app: LedgerApplication) -> str:
    return str(app.place_investment("bob", ASSET, 200_000).result["investment_id"])


def settled_investment(app: LedgerApplication) -> str:
    investment_id = pending_investment(app)
    app.confirm_payment(investment_id, "bank-ref-1")
    return investment_id


def cancelled_investment(app: LedgerApplication) -> str:
    investment_id = pending_investment(app)
    app.cancel_investment(investment_id)
    return investment_id


def paid_distribution(app: LedgerApplication) -> str:
    distribution_id = str(app.declare_distribution(ASSET, 1_000).result["distribution_id"])
    app.pay_distribution(distribution_id)
    return distribution_id


def bobs_kyc(status: str) -> Setup:
    return lambda app: app.update_kyc("bob", status)


def invest(investor_id: str, amount: int) -> Action:
    return lambda app, _: app.place_investment(investor_id, ASSET, amount)


def move(quantity: int, from_id: str = "alice", to_id: str = "bob", forced: bool = False) -> Action:
    return lambda app, _: app.transfer(ASSET, from_id, to_id, quantity, forced=forced)


def vote(investor_id: str, option: str) -> Action:
    return lambda app, proposal_id: app.cast_vote(proposal_id, investor_id, option)


def steps(*setups: Setup) -> Setup:
    def run(app: LedgerApplication) -> Any:
        return [setup(app) for setup in setups][-1]

    return run


# ----- validation of the input comes first -----


def bad_terms(**change: Any) -> Action:
    return lambda app, _: app.register_asset({**ASSET_TERMS, "asset_id": OTHER, **change})


MALFORMED: dict[str, Action] = {
    "lower-case asset_id": bad_terms(asset_id="toll-jkt-02"),
    "asset_id too short": bad_terms(asset_id="X"),
    "decimals above 18": bad_terms(decimals=19),
    "currency not in ISO 4217": bad_terms(currency="ZZZ"),
    "float unit_price": bad_terms(unit_price=100_000.0),
    "max_investment below min_investment": bad_terms(min_investment=10, max_investment=5),
    "unknown allowed country": bad_terms(allowed_countries=["ID", "XX"]),
    "negative lockup": bad_terms(lockup_seconds=-1),
    "unknown term": bad_terms(colour="red"),
    "investor_id with a space": lambda app, _: app.register_investor("al ice", "ID", NEW_WALLET, False),
    "short wallet": lambda app, _: app.register_investor("zed", "ID", "0x1234", False),
    "non-hex wallet": lambda app, _: app.register_investor("zed", "ID", "0x" + "g" * 40, False),
    "alpha-3 country": lambda app, _: app.register_investor("zed", "IDN", NEW_WALLET, False),
    "unknown country": lambda app, _: app.register_investor("zed", "XX", NEW_WALLET, False),
    "accredited not a bool": lambda app, _: app.register_investor("zed", "ID", NEW_WALLET, "yes"),
    "negative amount": lambda app, _: app.place_investment("alice", ASSET, -1),
    "float amount": lambda app, _: app.place_investment("alice", ASSET, 100_000.0),
    "amount in exponent form": lambda app, _: app.place_investment("alice", ASSET, "1e5"),
    "amount beyond 10**36": lambda app, _: app.place_investment("alice", ASSET, 10**37),
    "bool quantity": lambda app, _: app.transfer(ASSET, "alice", "bob", True),
    "float quantity": lambda app, _: app.transfer(ASSET, "alice", "bob", 1.0),
    "forced not a bool": lambda app, _: app.transfer(ASSET, "alice", "bob", 1, forced="yes"),
    "quantity not digits": lambda app, _: app.freeze_tokens(ASSET, "alice", "two"),
    "unknown kyc status": lambda app, _: app.update_kyc("alice", "maybe"),
    "kyc expiry without offset": lambda app, _: app.update_kyc("alice", "approved", "2027-01-01T00:00:00"),
    "expiry of a rejected kyc": lambda app, _: app.update_kyc("alice", "rejected", "2027-01-01T00:00:00Z"),
    "investment_id not a uuid": lambda app, _: app.confirm_payment("not-a-uuid", "ref-1"),
    "blank payment_ref": lambda app, _: app.confirm_payment(uuid4(), "   "),
    "a single option": lambda app, _: app.create_proposal(ASSET, "Q?", ["yes"], 5_000),
    "repeated options": lambda app, _: app.create_proposal(ASSET, "Q?", ["yes", "yes"], 5_000),
    "quorum above 100%": lambda app, _: app.create_proposal(ASSET, "Q?", ["a", "b"], 10_001),
    "option not a string": lambda app, _: app.cast_vote(uuid4(), "alice", 1),
    "zero distribution": lambda app, _: app.declare_distribution(ASSET, 0),
    "record_position beyond the head": lambda app, _: app.declare_distribution(ASSET, 100, 10**9),
    "empty idempotency key": lambda app, _: app.approve_asset(ASSET, idempotency_key=""),
    "validation before not_found": lambda app, _: app.place_investment("alice", "NOPE-1", 1.5),
}


def test_malformed_input_is_a_validation_error(app: LedgerApplication) -> None:
    market(app)
    assert_each_refused(app, "validation_error", MALFORMED)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(bad_terms(asset_id=OTHER + "\n"), id="asset_id"),
        pytest.param(
            lambda app, _: app.register_investor("zed\n", "ID", NEW_WALLET, False), id="investor_id"
        ),
    ],
)
def test_an_identifier_with_a_trailing_newline_is_a_validation_error(
    app: LedgerApplication, action: Action
) -> None:
    market(app)
    with refused(app, "validation_error"):
        action(app, None)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(bad_terms(currency="idr"), id="currency"),
        pytest.param(lambda app, _: app.register_investor("zed", "id", NEW_WALLET, False), id="country"),
    ],
)
def test_a_lower_case_iso_code_is_a_validation_error(app: LedgerApplication, action: Action) -> None:
    market(app)
    with refused(app, "validation_error"):
        action(app, None)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(bad_terms(name="Toll \udc80"), id="asset name"),
        pytest.param(
            lambda app, _: app.create_proposal(ASSET, "\ud800?", ["a", "b"], 1), id="proposal title"
        ),
    ],
)
def test_text_that_is_not_unicode_scalar_values_is_a_validation_error(
    app: LedgerApplication, action: Action
) -> None:
    market(app)
    with refused(app, "validation_error"):
        action(app, None)


# ----- unknown and existing resources -----

UNKNOWN: dict[str, Action] = {
    "investing in no asset": lambda app, _: app.place_investment("alice", "NOPE-1", 100_000),
    "investing as no investor": lambda app, _: app.place_investment("zed", ASSET, 100_000),
    "transfer to no investor": lambda app, _: app.transfer(ASSET, "alice", "zed", 1),
    "transfer from no investor": lambda app, _: app.transfer(ASSET, "zed", "alice", 1),
    "freezing no investor": lambda app, _: app.freeze_tokens(ASSET, "zed", 1),
    "kyc of no investor": lambda app, _: app.update_kyc("zed", "approved"),
    "confirming no investment": lambda app, _: app.confirm_payment(uuid4(), "ref-1"),
    "confirming a proposal": lambda app, ids: app.confirm_payment(ids["proposal"], "ref-1"),
    "distribution on no asset": lambda app, _: app.declare_distribution("NOPE-1", 1_000),
    "paying no distribution": lambda app, _: app.pay_distribution(uuid4()),
    "paying an investor without entitlement": lambda app, ids: app.pay_distribution(
        ids["distribution"], "bob"
    ),
    "voting on no proposal": lambda app, _: app.cast_vote(uuid4(), "alice", "yes"),
    "voting as no investor": lambda app, ids: app.cast_vote(ids["proposal"], "zed", "yes"),
    "recovering a wallet not hers": lambda app, _: app.recover_wallet("alice", wallet_for("bob"), NEW_WALLET),
}


def test_an_unknown_resource_is_not_found(app: LedgerApplication) -> None:
    market(app)
    distribution = app.declare_distribution(ASSET, 1_000).result["distribution_id"]
    ids = {"proposal": new_proposal(app), "distribution": str(distribution)}
    assert_each_refused(app, "not_found", UNKNOWN, ids)


EXISTING: dict[str, Action] = {
    "same asset_id": lambda app, _: app.register_asset(ASSET_TERMS),
    "same investor_id": lambda app, _: app.register_investor("alice", "ID", NEW_WALLET, False),
    "claimed wallet": lambda app, _: app.register_investor("zed", "ID", wallet_for("alice"), False),
    "claimed wallet in upper case": lambda app, _: app.register_investor(
        "zed", "ID", "0x" + wallet_for("alice")[2:].upper(), False
    ),
    "adding another's wallet": lambda app, _: app.add_wallet("alice", wallet_for("bob")),
    "adding her own wallet again": lambda app, _: app.add_wallet("alice", wallet_for("alice")),
    "recovering onto another's wallet": lambda app, _: app.recover_wallet(
        "alice", wallet_for("alice"), wallet_for("bob")
    ),
}


def test_registering_what_exists_is_already_exists(app: LedgerApplication) -> None:
    market(app)
    assert_each_refused(app, "already_exists", EXISTING)


def test_a_lost_wallet_stays_claimed_after_recovery(app: LedgerApplication) -> None:
    market(app)
    app.recover_wallet("alice", wallet_for("alice"), NEW_WALLET)
    assert app.get_investor("alice").wallets == [checksummed(NEW_WALLET)]
    with refused(app, "already_exists"):
        app.register_investor("mallory", "ID", wallet_for("alice"), False)


# ----- idempotency -----


def test_replaying_a_command_with_its_idempotency_key_returns_the_first_outcome_and_appends_nothing(
    app: LedgerApplication,
) -> None:
    market(app)
    first = app.place_investment("bob", ASSET, 250_000, idempotency_key="order-42")
    head = app.admin.head_position()
    again = app.place_investment("bob", ASSET, "250000", idempotency_key="order-42")
    assert again == first
    assert first.result["quantity"] == 2
    assert app.admin.head_position() == head == first.position
    assert app.get_asset(ASSET).reserved == {"bob": 2}
    assert app.admin.verify().ok


def test_reusing_an_idempotency_key_for_another_request_is_refused(app: LedgerApplication) -> None:
    market(app)
    app.place_investment("bob", ASSET, 250_000, idempotency_key="order-42")
    other_requests: dict[str, Action] = {
        "another amount": lambda app, _: app.place_investment("bob", ASSET, 300_000, "order-42"),
        "another investor": lambda app, _: app.place_investment("alice", ASSET, 250_000, "order-42"),
        "another command": lambda app, _: app.pause_asset(ASSET, idempotency_key="order-42"),
    }
    assert_each_refused(app, "idempotency_key_reused", other_requests)


def test_replaying_a_refused_command_with_its_idempotency_key_is_refused_again(
    app: LedgerApplication,
) -> None:
    market(app)
    for _ in range(2):
        with refused(app, "amount_below_minimum"):
            app.place_investment("bob", ASSET, 1, idempotency_key="order-7")


# ----- eligibility -----


def test_an_ineligible_investor_can_neither_invest_nor_receive_tokens(
    app: LedgerApplication, clock: FakeClock
) -> None:
    market(app, allowed_countries=["ID", "SG"], accredited_only=True)
    onboard(app, "pending", accredited=True, kyc="pending")
    onboard(app, "rejected", accredited=True, kyc="rejected")
    onboard(app, "revoked", accredited=True, kyc="revoked")
    onboard(app, "expired", accredited=True, kyc="pending")
    app.update_kyc("expired", "approved", clock.now.isoformat())
    onboard(app, "foreign", country="US", accredited=True)
    onboard(app, "retail", country="SG", accredited=False)
    ineligible = ["pending", "rejected", "revoked", "expired", "foreign", "retail"]
    cases: dict[str, Action] = {}
    for investor_id in ineligible:
        cases[f"{investor_id} invests"] = invest(investor_id, 100_000)
        cases[f"{investor_id} receives"] = move(1, to_id=investor_id)
    assert_each_refused(app, "investor_not_eligible", cases)


# ----- the rules of 4.3-4.5, each on a ledger of its own -----


RULES = [
    # investments
    (
        "offering closed",
        {},
        lambda app: app.set_offering(ASSET, False),
        invest("bob", 100_000),
        "asset_not_offering",
    ),
    (
        "draft asset",
        {},
        lambda app: app.register_asset({**ASSET_TERMS, "asset_id": OTHER}),
        lambda app, _: app.place_investment("bob", OTHER, 100_000),
        "asset_not_offering",
    ),
    ("below minimum", {}, nothing, invest("bob", 99_999), "amount_below_minimum"),
    (
        "above maximum",
        {"max_investment": 1_000_000},
        nothing,
        invest("bob", 1_000_001),
        "amount_above_maximum",
    ),
    ("buys nothing", {"min_investment": 0}, nothing, invest("bob", 99_999), "amount_too_small"),
    ("supply", {"authorized_supply": 12}, nothing, invest("bob", 300_000), "authorized_supply_exceeded"),
    ("holders by investment", {"max_holders": 1}, nothing, invest("bob", 100_000), "max_holders_exceeded"),
    ("balance by investment", {"max_balance": 12}, nothing, invest("alice", 300_000), "max_balance_exceeded"),
    # transfers
    ("zero quantity", {}, nothing, move(0), "invalid_quantity"),
    ("to herself", {}, nothing, move(1, to_id="alice"), "same_investor"),
    ("paused", {}, lambda app: app.pause_asset(ASSET), move(1), "asset_paused"),
    ("sender frozen", {}, lambda app: app.freeze_investor(ASSET, "alice"), move(1), "investor_frozen"),
    ("receiver frozen", {}, lambda app: app.freeze_investor(ASSET, "bob"), move(1), "investor_frozen"),
    ("beyond balance", {}, nothing, move(11), "insufficient_balance"),
    ("frozen tokens", {}, lambda app: app.freeze_tokens(ASSET, "alice", 5), move(6), "insufficient_balance"),
    ("locked tokens", {"lockup_seconds": 3600}, nothing, move(1), "insufficient_balance"),
    ("holders by transfer", {"max_holders": 1}, nothing, move(1), "max_holders_exceeded"),
    (
        "balance by transfer",
        {"max_balance": 10},
        lambda app: holding(app, ASSET, "bob", 5),
        move(6),
        "max_balance_exceeded",
    ),
    # forced transfers, redemptions, freezes
    ("forced beyond balance", {}, nothing, move(11, forced=True), "insufficient_balance"),
    (
        "redeem beyond balance",
        {},
        nothing,
        lambda app, _: app.redeem(ASSET, "alice", 11),
        "insufficient_balance",
    ),
    (
        "freeze beyond balance",
        {},
        lambda app: app.freeze_tokens(ASSET, "alice", 6),
        lambda app, _: app.freeze_tokens(ASSET, "alice", 5),
        "insufficient_balance",
    ),
    (
        "unfreeze beyond frozen",
        {},
        lambda app: app.freeze_tokens(ASSET, "alice", 3),
        lambda app, _: app.unfreeze_tokens(ASSET, "alice", 4),
        "invalid_quantity",
    ),
    (
        "address frozen twice",
        {},
        lambda app: app.freeze_investor(ASSET, "bob"),
        lambda app, _: app.freeze_investor(ASSET, "bob"),
        "invalid_state",
    ),
    # votes
    ("no voting power", {}, new_proposal, vote("bob", "yes"), "no_voting_power"),
    ("voting twice", {}, voted_proposal, vote("alice", "no"), "already_voted"),
    ("voting after close", {}, closed_proposal, vote("alice", "yes"), "proposal_closed"),
    ("option not on the ballot", {}, new_proposal, vote("alice", "maybe"), "invalid_option"),
    ("closing twice", {}, closed_proposal, lambda app, pid: app.close_proposal(pid), "proposal_closed"),
    # lifecycles
    (
        "confirming twice",
        {},
        settled_investment,
        lambda app, iid: app.confirm_payment(iid, "bank-ref-2"),
        "invalid_state",
    ),
    (
        "confirming a cancelled investment",
        {},
        cancelled_investment,
        lambda app, iid: app.confirm_payment(iid, "bank-ref-1"),
        "invalid_state",
    ),
    (
        "cancelling a settled investment",
        {},
        settled_investment,
        lambda app, iid: app.cancel_investment(iid),
        "invalid_state",
    ),
    (
        "paying a distribution twice",
        {},
        paid_distribution,
        lambda app, did: app.pay_distribution(did),
        "invalid_state",
    ),
    (
        "paying an investor twice",
        {},
        paid_distribution,
        lambda app, did: app.pay_distribution(did, "alice"),
        "invalid_state",
    ),
    (
        "distribution without holders",
        {},
        lambda app: open_asset(app, asset_id=OTHER),
        lambda app, _: app.declare_distribution(OTHER, 1_000),
        "invalid_state",
    ),
    (
        "distribution before any holder",
        {},
        nothing,
        lambda app, _: app.declare_distribution(ASSET, 1_000, 0),
        "invalid_state",
    ),
    # when several rules fail, the first listed wins
    (
        "order: offering closed, ineligible, below minimum",
        {},
        steps(lambda app: app.set_offering(ASSET, False), bobs_kyc("revoked")),
        invest("bob", 1),
        "asset_not_offering",
    ),
    (
        "order: ineligible, above maximum, beyond supply",
        {"authorized_supply": 12, "max_investment": 1_000_000},
        bobs_kyc("revoked"),
        invest("bob", 1_100_000),
        "investor_not_eligible",
    ),
    (
        "order: paused, frozen, beyond balance, ineligible",
        {"max_holders": 1},
        steps(
            lambda app: app.pause_asset(ASSET),
            lambda app: app.freeze_investor(ASSET, "bob"),
            bobs_kyc("revoked"),
        ),
        move(11),
        "asset_paused",
    ),
    (
        "order: frozen, locked, ineligible",
        {"lockup_seconds": 3600, "max_holders": 1},
        steps(lambda app: app.freeze_investor(ASSET, "alice"), bobs_kyc("revoked")),
        move(1),
        "investor_frozen",
    ),
    (
        "order: locked, ineligible, holders",
        {"lockup_seconds": 3600, "max_holders": 1},
        bobs_kyc("revoked"),
        move(1),
        "insufficient_balance",
    ),
    ("order: ineligible, holders", {"max_holders": 1}, bobs_kyc("revoked"), move(1), "investor_not_eligible"),
    ("order: no power, closed, invalid option", {}, closed_proposal, vote("bob", "maybe"), "no_voting_power"),
    ("order: voted, closed", {}, voted_and_closed_proposal, vote("alice", "maybe"), "already_voted"),
]


@pytest.mark.parametrize(("terms", "setup", "action", "code"), [pytest.param(*r[1:], id=r[0]) for r in RULES])
def test_a_command_breaking_a_rule_is_refused_with_its_code_and_appends_nothing(
    app: LedgerApplication, terms: dict[str, Any], setup: Setup, action: Action, code: str
) -> None:
    market(app, **terms)
    given = setup(app)
    with refused(app, code):
        action(app, given)


# ----- rules that depend on time and on history -----


def test_a_distribution_at_a_record_position_uses_the_cap_table_as_of_that_position(
    app: LedgerApplication,
) -> None:
    market(app)
    onboard(app, "carol")
    only_alice = app.admin.head_position()
    holding(app, ASSET, "bob", 30)
    record = app.admin.head_position()
    app.transfer(ASSET, "alice", "carol", 10)
    app.transfer(ASSET, "bob", "carol", 20)

    def entitlements(record_position: Any) -> dict[str, int]:
        outcome = app.declare_distribution(ASSET, 1_000, record_position)
        distribution = app.get_distribution(outcome.result["distribution_id"])
        assert distribution.record_position == (None if record_position is None else int(record_position))
        return distribution.entitlements

    assert entitlements(record) == {"alice": 250, "bob": 750}
    assert entitlements(str(record)) == {"alice": 250, "bob": 750}
    assert entitlements(only_alice) == {"alice": 1_000}
    assert entitlements(None) == {"bob": 250, "carol": 750}
    assert app.admin.verify().ok


def test_frozen_tokens_count_for_distributions_and_votes(app: LedgerApplication) -> None:
    market(app)
    holding(app, ASSET, "bob", 30)
    app.freeze_tokens(ASSET, "bob", 30)
    app.freeze_investor(ASSET, "bob")
    distribution = app.declare_distribution(ASSET, 1_000).result["distribution_id"]
    assert app.get_distribution(distribution).entitlements == {"alice": 250, "bob": 750}
    proposal_id = new_proposal(app)
    assert app.cast_vote(proposal_id, "bob", "no").result["weight"] == 30


def test_paying_entitlements_one_investor_at_a_time_then_the_rest(app: LedgerApplication) -> None:
    market(app)
    holding(app, ASSET, "bob", 10)
    distribution_id = str(app.declare_distribution(ASSET, 1_001).result["distribution_id"])
    assert app.get_distribution(distribution_id).entitlements == {"alice": 501, "bob": 500}
    assert app.pay_distribution(distribution_id, "bob").result["paid_investor_ids"] == ["bob"]
    assert app.pay_distribution(distribution_id).result["paid_investor_ids"] == ["alice"]
    with refused(app, "invalid_state"):
        app.pay_distribution(distribution_id)


def test_an_expired_kyc_makes_an_investor_ineligible(app: LedgerApplication, clock: FakeClock) -> None:
    market(app)
    app.update_kyc("bob", "approved", (clock.now + timedelta(days=30)).isoformat())
    holding(app, ASSET, "bob", 1)
    app.transfer(ASSET, "alice", "bob", 1)
    clock.advance(timedelta(days=30).total_seconds())
    with refused(app, "investor_not_eligible"):
        app.place_investment("bob", ASSET, 100_000)
    with refused(app, "investor_not_eligible"):
        app.transfer(ASSET, "alice", "bob", 1)
    app.update_kyc("bob", "approved", (clock.now + timedelta(days=365)).isoformat())
    app.transfer(ASSET, "alice", "bob", 1)
    assert app.get_asset(ASSET).balance_of("bob") == 3


def test_tokens_become_transferable_when_the_lockup_expires(app: LedgerApplication, clock: FakeClock) -> None:
    market(app, lockup_seconds=3600)
    clock.advance(1800)
    holding(app, ASSET, "alice", 5)
    with refused(app, "insufficient_balance"):
        app.transfer(ASSET, "alice", "bob", 1)
    clock.advance(1799)
    with refused(app, "insufficient_balance"):
        app.transfer(ASSET, "alice", "bob", 1)
    clock.advance(1)
    with refused(app, "insufficient_balance"):
        app.transfer(ASSET, "alice", "bob", 11)
    app.transfer(ASSET, "alice", "bob", 10)
    clock.advance(1800)
    app.transfer(ASSET, "alice", "bob", 5)
    assert app.get_asset(ASSET).balances == {"bob": 15}


def test_a_forced_transfer_ignores_pause_freezes_lockup_and_eligibility(app: LedgerApplication) -> None:
    market(app, lockup_seconds=3600)
    app.freeze_tokens(ASSET, "alice", 6)
    app.freeze_investor(ASSET, "alice")
    app.freeze_investor(ASSET, "bob")
    app.update_kyc("bob", "revoked")
    app.pause_asset(ASSET)
    app.transfer(ASSET, "alice", "bob", 7, forced=True)
    asset = app.get_asset(ASSET)
    assert asset.balances == {"alice": 3, "bob": 7}
    assert asset.frozen == {"alice": 3}
    app.redeem(ASSET, "alice", 3)
    asset = app.get_asset(ASSET)
    assert (asset.balances, asset.frozen, asset.total_supply) == ({"bob": 7}, {}, 7)
    assert app.admin.verify().ok


def test_a_paused_asset_still_issues_tokens(app: LedgerApplication) -> None:
    market(app)
    app.pause_asset(ASSET)
    holding(app, ASSET, "bob", 2)
    assert app.get_asset(ASSET).balances == {"alice": 10, "bob": 2}


def test_a_cancelled_investment_gives_its_supply_back(app: LedgerApplication) -> None:
    market(app, authorized_supply=12)
    investment_id = str(app.place_investment("bob", ASSET, 200_000).result["investment_id"])
    with refused(app, "authorized_supply_exceeded"):
        app.place_investment("alice", ASSET, 100_000)
    app.cancel_investment(investment_id)
    holding(app, ASSET, "alice", 2)
    assert app.get_asset(ASSET).total_supply == 12


def test_a_vote_weighs_the_balance_at_the_proposals_creation(app: LedgerApplication) -> None:
    market(app)
    onboard(app, "carol")
    holding(app, ASSET, "bob", 6)
    proposal_id = new_proposal(app)
    app.transfer(ASSET, "alice", "carol", 10)
    app.transfer(ASSET, "bob", "alice", 6)
    assert app.cast_vote(proposal_id, "alice", "yes").result["weight"] == 10
    assert app.cast_vote(proposal_id, "bob", "no").result["weight"] == 6
    with refused(app, "no_voting_power"):
        app.cast_vote(proposal_id, "carol", "no")
    assert app.close_proposal(proposal_id).result["result"] == "yes"
    proposal = app.get_proposal(proposal_id)
    assert (proposal.supply_at_snapshot, proposal.votes) == (16, {"alice": ("yes", 10), "bob": ("no", 6)})


def test_a_vote_past_closes_at_is_refused(app: LedgerApplication, clock: FakeClock) -> None:
    market(app)
    holding(app, ASSET, "bob", 10)
    proposal_id = new_proposal(app, closes_at=(clock.now + timedelta(hours=1)).isoformat())
    clock.advance(3599)
    app.cast_vote(proposal_id, "alice", "yes")
    clock.advance(2)
    with refused(app, "proposal_closed"):
        app.cast_vote(proposal_id, "bob", "no")
    assert app.close_proposal(proposal_id).result["result"] == "yes"


def test_the_ledger_keeps_working_after_refused_commands(app: LedgerApplication) -> None:
    market(app)
    for amount in (1, 10**12):
        with pytest.raises(LedgerError):
            app.place_investment("bob", ASSET, amount)
    with pytest.raises(LedgerError):
        app.transfer(ASSET, "alice", "bob", 11)
    outcome = app.place_investment("bob", ASSET, 100_000)
    app.confirm_payment(outcome.result["investment_id"], "bank-ref-1")
    app.transfer(ASSET, "alice", "bob", 10)
    asset = app.get_asset(ASSET)
    assert (asset.balances, asset.total_supply, asset.reserved) == ({"bob": 11}, 11, {})
    assert app.admin.verify().ok

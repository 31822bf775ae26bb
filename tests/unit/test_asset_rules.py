"""Rules of the Asset aggregate (SPEC 4.3): transfers, lock-up, forced transfers, redemptions, freezes.

Given an asset built from its own events, when a command runs, then either the
new pending events, or the rejection's contract `code` with the asset left
exactly as it was (no pending event, no state change).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import errors
from ledger.domain.asset import Asset
from ledger.domain.terms import AssetTerms
from ledger.errors import LedgerError
from tests.support import ASSET_TERMS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@contextmanager
def rejected(aggregate: Aggregate, code: str) -> Iterator[None]:
    """The command run in the block is refused with `code` and leaves the aggregate untouched."""
    before = copy.deepcopy(vars(aggregate))
    with pytest.raises(LedgerError) as info:
        yield
    assert info.value.code == code, info.value.detail
    assert vars(aggregate) == before


def new_asset(**terms: Any) -> Asset:
    """An approved asset with an open offering; its history is already collected."""
    asset = Asset.register(AssetTerms.parse({**ASSET_TERMS, **terms}))
    asset.approve()
    asset.set_offering(True)
    asset.collect_events()
    return asset


def issue(asset: Asset, investor_id: str, quantity: int, issued_at: datetime = T0) -> None:
    """Given: `quantity` tokens reserved for and then issued to an investor at `issued_at`."""
    investment_id = uuid4()
    asset.reserve(investment_id, investor_id, quantity)
    asset.issue(investment_id, investor_id, quantity, issued_at)
    asset.collect_events()


def asset_held_by(holdings: dict[str, int], **terms: Any) -> Asset:
    asset = new_asset(**terms)
    for investor_id, quantity in holdings.items():
        issue(asset, investor_id, quantity)
    return asset


def new_events(aggregate: Aggregate) -> list[Any]:
    """Then: the events the command triggered (collected, so the next step starts clean)."""
    return list(aggregate.collect_events())


def only_event(aggregate: Aggregate) -> Any:
    events = new_events(aggregate)
    assert len(events) == 1, events
    return events[0]


def transferred(event: Any) -> tuple[str, str, int, bool, int]:
    assert isinstance(event, Asset.TokensTransferred)
    return event.from_investor_id, event.to_investor_id, event.quantity, event.forced, event.unfrozen


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ValidationError, "validation_error"),
        (errors.NotFoundError, "not_found"),
        (errors.AlreadyExistsError, "already_exists"),
        (errors.IdempotencyKeyReusedError, "idempotency_key_reused"),
        (errors.InvalidStateError, "invalid_state"),
        (errors.AssetNotOfferingError, "asset_not_offering"),
        (errors.InvestorNotEligibleError, "investor_not_eligible"),
        (errors.AmountBelowMinimumError, "amount_below_minimum"),
        (errors.AmountAboveMaximumError, "amount_above_maximum"),
        (errors.AmountTooSmallError, "amount_too_small"),
        (errors.AuthorizedSupplyExceededError, "authorized_supply_exceeded"),
        (errors.MaxHoldersExceededError, "max_holders_exceeded"),
        (errors.MaxBalanceExceededError, "max_balance_exceeded"),
        (errors.InvalidQuantityError, "invalid_quantity"),
        (errors.SameInvestorError, "same_investor"),
        (errors.AssetPausedError, "asset_paused"),
        (errors.InvestorFrozenError, "investor_frozen"),
        (errors.InsufficientBalanceError, "insufficient_balance"),
        (errors.NoVotingPowerError, "no_voting_power"),
        (errors.AlreadyVotedError, "already_voted"),
        (errors.ProposalClosedError, "proposal_closed"),
        (errors.InvalidOptionError, "invalid_option"),
    ],
)
def test_every_rejection_carries_its_contract_code(error: type[LedgerError], code: str) -> None:
    assert issubclass(error, LedgerError)
    assert error("detail").code == code


# ----- lifecycle -----


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda a: a.approve(), id="approving twice"),
        pytest.param(lambda a: a.set_offering(True), id="opening an open offering"),
        pytest.param(lambda a: a.unpause(), id="unpausing an unpaused asset"),
        pytest.param(lambda a: (a.pause(), a.pause()), id="pausing twice"),
    ],
)
def test_repeating_a_lifecycle_step_is_invalid_state(command: Callable[[Asset], object]) -> None:
    asset = new_asset()
    with pytest.raises(errors.InvalidStateError):
        command(asset)


def test_a_draft_asset_cannot_open_an_offering_nor_be_tokenized() -> None:
    asset = Asset.register(AssetTerms.parse(ASSET_TERMS))
    asset.collect_events()
    with rejected(asset, "invalid_state"):
        asset.set_offering(True)
    with rejected(asset, "invalid_state"):
        asset.bind_token(1, "0x" + "11" * 20, "0x" + "22" * 20)


def test_binding_a_token_tokenizes_the_asset_once() -> None:
    asset = new_asset()
    asset.bind_token(31337, "0x" + "11" * 20, "0x" + "22" * 20)
    event = only_event(asset)
    assert isinstance(event, Asset.TokenBound)
    assert asset.status == "tokenized"
    with rejected(asset, "invalid_state"):
        asset.bind_token(31337, "0x" + "33" * 20, "0x" + "22" * 20)


# ----- transfers -----


def test_transfer_moves_tokens_from_one_investor_to_another() -> None:
    asset = asset_held_by({"alice": 10})
    asset.transfer("alice", "bob", 4, receiver_eligible=True, now=T0)
    assert transferred(only_event(asset)) == ("alice", "bob", 4, False, 0)
    assert asset.balances == {"alice": 6, "bob": 4}
    assert asset.total_supply == 10


def test_transferring_a_whole_balance_removes_the_sender_from_the_holders() -> None:
    asset = asset_held_by({"alice": 10})
    asset.transfer("alice", "bob", 10, receiver_eligible=True, now=T0)
    assert asset.balances == {"bob": 10}
    assert asset.holder_count == 1


@pytest.mark.parametrize("quantity", [0, -1])
def test_transfer_of_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "invalid_quantity"):
        asset.transfer("alice", "bob", quantity, receiver_eligible=True, now=T0)


def test_transfer_to_the_same_investor_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "same_investor"):
        asset.transfer("alice", "alice", 1, receiver_eligible=True, now=T0)


def test_transfer_while_the_asset_is_paused_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    asset.pause()
    asset.collect_events()
    with rejected(asset, "asset_paused"):
        asset.transfer("alice", "bob", 1, receiver_eligible=True, now=T0)


@pytest.mark.parametrize("frozen", ["alice", "bob"])
def test_transfer_from_or_to_an_address_frozen_investor_is_rejected(frozen: str) -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_address(frozen)
    asset.collect_events()
    with rejected(asset, "investor_frozen"):
        asset.transfer("alice", "bob", 1, receiver_eligible=True, now=T0)


def test_transfer_beyond_transferable_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "insufficient_balance"):
        asset.transfer("alice", "bob", 11, receiver_eligible=True, now=T0)


def test_transfer_from_an_investor_holding_nothing_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "insufficient_balance"):
        asset.transfer("carol", "bob", 1, receiver_eligible=True, now=T0)


def test_frozen_tokens_are_not_transferable() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 4)
    asset.collect_events()
    with rejected(asset, "insufficient_balance"):
        asset.transfer("alice", "bob", 7, receiver_eligible=True, now=T0)
    asset.transfer("alice", "bob", 6, receiver_eligible=True, now=T0)
    assert asset.balances == {"alice": 4, "bob": 6}
    assert asset.frozen_of("alice") == 4


def test_transfer_to_an_ineligible_investor_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "investor_not_eligible"):
        asset.transfer("alice", "bob", 1, receiver_eligible=False, now=T0)


def test_transfer_to_a_new_holder_when_the_asset_is_at_max_holders_is_rejected() -> None:
    asset = asset_held_by({"alice": 10, "bob": 5}, max_holders=2)
    with rejected(asset, "max_holders_exceeded"):
        asset.transfer("alice", "carol", 1, receiver_eligible=True, now=T0)


def test_transfer_to_an_existing_holder_at_max_holders_is_allowed() -> None:
    asset = asset_held_by({"alice": 10, "bob": 5}, max_holders=2)
    asset.transfer("alice", "bob", 10, receiver_eligible=True, now=T0)
    assert asset.balances == {"bob": 15}


def test_transfer_beyond_the_receivers_max_balance_is_rejected() -> None:
    asset = asset_held_by({"alice": 10, "bob": 5}, max_balance=10)
    with rejected(asset, "max_balance_exceeded"):
        asset.transfer("alice", "bob", 6, receiver_eligible=True, now=T0)
    asset.transfer("alice", "bob", 5, receiver_eligible=True, now=T0)
    assert asset.balance_of("bob") == 10


def _pause(asset: Asset) -> None:
    asset.pause()


def _freeze_address(investor_id: str) -> Callable[[Asset], None]:
    return lambda asset: asset.freeze_address(investor_id)


@pytest.mark.parametrize(
    ("terms", "given_steps", "transfer", "code"),
    [
        pytest.param(
            {}, [], ("alice", "alice", 0, False), "invalid_quantity", id="invalid_quantity>same_investor"
        ),
        pytest.param(
            {}, [_pause], ("alice", "alice", 1, True), "same_investor", id="same_investor>asset_paused"
        ),
        pytest.param(
            {},
            [_pause, _freeze_address("bob")],
            ("alice", "bob", 1, True),
            "asset_paused",
            id="asset_paused>investor_frozen",
        ),
        pytest.param(
            {},
            [_freeze_address("alice")],
            ("alice", "bob", 11, False),
            "investor_frozen",
            id="investor_frozen>insufficient_balance",
        ),
        pytest.param(
            {},
            [],
            ("alice", "bob", 11, False),
            "insufficient_balance",
            id="insufficient_balance>investor_not_eligible",
        ),
        pytest.param(
            {"max_holders": 1},
            [],
            ("alice", "bob", 1, False),
            "investor_not_eligible",
            id="investor_not_eligible>max_holders_exceeded",
        ),
        pytest.param(
            {"max_holders": 1, "max_balance": 5},
            [],
            ("alice", "bob", 6, True),
            "max_holders_exceeded",
            id="max_holders_exceeded>max_balance_exceeded",
        ),
    ],
)
def test_when_several_transfer_rules_fail_the_first_listed_wins(
    terms: dict[str, Any],
    given_steps: list[Callable[[Asset], None]],
    transfer: tuple[str, str, int, bool],
    code: str,
) -> None:
    asset = asset_held_by({"alice": 10}, **terms)
    for step in given_steps:
        step(asset)
    asset.collect_events()
    from_id, to_id, quantity, eligible = transfer
    with rejected(asset, code):
        asset.transfer(from_id, to_id, quantity, receiver_eligible=eligible, now=T0)


# ----- lock-up -----


def test_tokens_issued_less_than_the_lockup_ago_are_not_transferable() -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    assert asset.locked_of("alice", at(HOUR - 1)) == 10
    with rejected(asset, "insufficient_balance"):
        asset.transfer("alice", "bob", 1, receiver_eligible=True, now=at(HOUR - 1))


def test_tokens_become_transferable_once_the_lockup_has_passed() -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    assert asset.transferable_of("alice", at(HOUR)) == 10
    asset.transfer("alice", "bob", 10, receiver_eligible=True, now=at(HOUR))
    assert asset.balances == {"bob": 10}


def test_only_the_recently_issued_quantity_is_locked() -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 6, issued_at=T0)
    issue(asset, "alice", 4, issued_at=at(HOUR - 600))
    now = at(HOUR)
    assert (asset.locked_of("alice", now), asset.transferable_of("alice", now)) == (4, 6)
    with rejected(asset, "insufficient_balance"):
        asset.transfer("alice", "bob", 7, receiver_eligible=True, now=now)
    asset.transfer("alice", "bob", 6, receiver_eligible=True, now=now)
    assert asset.balances == {"alice": 4, "bob": 6}


@pytest.mark.parametrize(
    ("frozen", "locked", "transferable"),
    [(0, 5, 10), (8, 5, 2), (10, 5, 0), (12, 3, 0), (15, 0, 0)],
)
def test_the_locked_quantity_is_capped_at_the_unfrozen_balance(
    frozen: int, locked: int, transferable: int
) -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    issue(asset, "alice", 5, issued_at=at(2 * HOUR))
    if frozen:
        asset.freeze_tokens("alice", frozen)
    now = at(2 * HOUR + 1)
    assert asset.locked_of("alice", now) == locked
    assert asset.transferable_of("alice", now) == transferable
    assert asset.balance_of("alice") - asset.frozen_of("alice") - locked == transferable


def test_a_lockup_outlives_a_balance_emptied_by_a_forced_transfer() -> None:
    """The lock-up counts tokens issued to the investor less than the lock-up ago, capped at
    the unfrozen balance: emptied by a forced transfer and filled again within the hour,
    the balance is locked again by the earlier issuance."""
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    issue(asset, "bob", 10, issued_at=T0 - timedelta(seconds=2 * HOUR))
    asset.force_transfer("alice", "bob", 10)
    assert "alice" not in asset.balances and asset.locked_of("alice", at(60)) == 0
    asset.transfer("bob", "alice", 4, receiver_eligible=True, now=at(60))
    assert (asset.locked_of("alice", at(60)), asset.transferable_of("alice", at(60))) == (4, 0)
    assert asset.transferable_of("alice", at(HOUR)) == 4


def test_without_a_lockup_issued_tokens_are_transferable_at_once() -> None:
    asset = asset_held_by({"alice": 10})
    asset.transfer("alice", "bob", 10, receiver_eligible=True, now=T0)
    assert asset.balances == {"bob": 10}


# ----- forced transfers -----


def test_forced_transfer_ignores_pause_freezes_lockup_and_eligibility() -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    asset.pause()
    asset.freeze_address("alice")
    asset.freeze_address("bob")
    asset.collect_events()
    asset.force_transfer("alice", "bob", 10)
    assert transferred(only_event(asset)) == ("alice", "bob", 10, True, 0)
    assert asset.balances == {"bob": 10}


@pytest.mark.parametrize(
    ("quantity", "unfrozen"),
    [(6, 0), (8, 2), (10, 4)],
)
def test_forced_transfer_unfreezes_only_the_frozen_tokens_it_needs(quantity: int, unfrozen: int) -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 4)
    asset.collect_events()
    asset.force_transfer("alice", "bob", quantity)
    assert transferred(only_event(asset)) == ("alice", "bob", quantity, True, unfrozen)
    assert asset.frozen_of("alice") == 4 - unfrozen
    assert asset.balance_of("alice") == 10 - quantity
    assert asset.frozen_of("bob") == 0


def test_forced_transfer_beyond_the_balance_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 10)
    asset.collect_events()
    with rejected(asset, "insufficient_balance"):
        asset.force_transfer("alice", "bob", 11)


@pytest.mark.parametrize("quantity", [0, -5])
def test_forced_transfer_of_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "invalid_quantity"):
        asset.force_transfer("alice", "bob", quantity)


def test_forced_transfer_to_the_same_investor_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "same_investor"):
        asset.force_transfer("alice", "alice", 1)


def test_forced_transfer_to_the_same_investor_beyond_the_balance_is_rejected_as_same_investor() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "same_investor"):
        asset.force_transfer("alice", "alice", 11)


# ----- redemption -----


def test_redemption_burns_tokens_and_reduces_the_supply() -> None:
    asset = asset_held_by({"alice": 10, "bob": 5})
    asset.redeem("alice", 4)
    event = only_event(asset)
    assert isinstance(event, Asset.TokensRedeemed)
    assert (event.investor_id, event.quantity, event.unfrozen) == ("alice", 4, 0)
    assert asset.balances == {"alice": 6, "bob": 5}
    assert asset.total_supply == 11


def test_redemption_takes_frozen_and_locked_tokens_unfreezing_only_what_it_needs() -> None:
    asset = new_asset(lockup_seconds=HOUR)
    issue(asset, "alice", 10, issued_at=T0)
    asset.freeze_tokens("alice", 6)
    asset.collect_events()
    asset.redeem("alice", 7)
    event = only_event(asset)
    assert (event.quantity, event.unfrozen) == (7, 3)
    assert (asset.balance_of("alice"), asset.frozen_of("alice"), asset.total_supply) == (3, 3, 3)


def test_redeeming_a_whole_balance_removes_the_holder() -> None:
    asset = asset_held_by({"alice": 10})
    asset.redeem("alice", 10)
    assert asset.balances == {}
    assert asset.total_supply == 0


def test_redemption_beyond_the_balance_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "insufficient_balance"):
        asset.redeem("alice", 11)


@pytest.mark.parametrize("quantity", [0, -1])
def test_redemption_of_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "invalid_quantity"):
        asset.redeem("alice", quantity)


# ----- partial freeze -----


def test_freezing_tokens_adds_to_the_frozen_quantity() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 3)
    asset.freeze_tokens("alice", 7)
    events = new_events(asset)
    assert [(type(e), e.investor_id, e.quantity) for e in events] == [
        (Asset.TokensFrozen, "alice", 3),
        (Asset.TokensFrozen, "alice", 7),
    ]
    assert asset.frozen_of("alice") == 10


def test_freezing_more_than_the_balance_is_rejected() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 6)
    asset.collect_events()
    with rejected(asset, "insufficient_balance"):
        asset.freeze_tokens("alice", 5)


@pytest.mark.parametrize("quantity", [0, -1])
def test_freezing_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "invalid_quantity"):
        asset.freeze_tokens("alice", quantity)


def test_unfreezing_releases_frozen_tokens() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 6)
    asset.collect_events()
    asset.unfreeze_tokens("alice", 6)
    event = only_event(asset)
    assert isinstance(event, Asset.TokensUnfrozen)
    assert (event.investor_id, event.quantity) == ("alice", 6)
    assert asset.frozen_of("alice") == 0
    assert asset.transferable_of("alice", T0) == 10


@pytest.mark.parametrize("quantity", [7, 0, -1])
def test_unfreezing_more_than_frozen_or_a_non_positive_quantity_is_rejected(quantity: int) -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_tokens("alice", 6)
    asset.collect_events()
    with rejected(asset, "invalid_quantity"):
        asset.unfreeze_tokens("alice", quantity)


# ----- address freeze -----


def test_freezing_and_unfreezing_an_address_is_recorded() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_address("alice")
    assert isinstance(only_event(asset), Asset.AddressFrozen)
    asset.unfreeze_address("alice")
    event = only_event(asset)
    assert isinstance(event, Asset.AddressUnfrozen)
    assert event.investor_id == "alice"
    asset.transfer("alice", "bob", 1, receiver_eligible=True, now=T0)
    assert asset.balances == {"alice": 9, "bob": 1}


def test_freezing_an_address_twice_is_invalid_state() -> None:
    asset = asset_held_by({"alice": 10})
    asset.freeze_address("alice")
    asset.collect_events()
    with rejected(asset, "invalid_state"):
        asset.freeze_address("alice")


def test_unfreezing_an_address_that_is_not_frozen_is_invalid_state() -> None:
    asset = asset_held_by({"alice": 10})
    with rejected(asset, "invalid_state"):
        asset.unfreeze_address("alice")


# ----- invariants under random command sequences -----

INVESTORS = st.sampled_from(["alice", "bob", "carol"])
QUANTITIES = st.integers(min_value=-1, max_value=40)
COMMANDS = st.one_of(
    st.tuples(st.just("invest"), INVESTORS, st.integers(min_value=0, max_value=3_000_000)),
    st.tuples(st.just("transfer"), INVESTORS, INVESTORS, QUANTITIES, st.booleans()),
    st.tuples(st.just("force_transfer"), INVESTORS, INVESTORS, QUANTITIES),
    st.tuples(st.just("redeem"), INVESTORS, QUANTITIES),
    st.tuples(st.just("freeze_tokens"), INVESTORS, QUANTITIES),
    st.tuples(st.just("unfreeze_tokens"), INVESTORS, QUANTITIES),
    st.tuples(st.just("freeze_address"), INVESTORS),
    st.tuples(st.just("unfreeze_address"), INVESTORS),
    st.tuples(st.just("pause")),
    st.tuples(st.just("unpause")),
    st.tuples(st.just("wait"), st.integers(min_value=0, max_value=2 * HOUR)),
)


def run_command(asset: Asset, command: tuple[Any, ...], now: datetime) -> None:
    name, *args = command
    if name == "invest":
        investor_id, amount = args
        purchase = asset.check_investment(investor_id, True, amount)
        investment_id = uuid4()
        asset.reserve(investment_id, investor_id, purchase.quantity)
        asset.issue(investment_id, investor_id, purchase.quantity, now)
    elif name == "transfer":
        from_id, to_id, quantity, eligible = args
        asset.transfer(from_id, to_id, quantity, receiver_eligible=eligible, now=now)
    else:
        getattr(asset, name)(*args)


def assert_invariants(asset: Asset) -> None:
    assert sum(asset.balances.values()) == asset.total_supply <= asset.authorized_supply
    assert all(quantity > 0 for quantity in asset.balances.values())
    assert all(0 < asset.frozen[i] <= asset.balance_of(i) for i in asset.frozen)
    # Lots (the issuance history the lock-up counts) outlive an emptied balance: tokens
    # received later are locked by an issuance less than the lock-up ago.
    assert all(quantity > 0 for lots in asset.lots.values() for _, quantity in lots)
    assert all(0 <= asset.locked_of(i, T0) <= asset.balance_of(i) - asset.frozen_of(i) for i in asset.lots)
    assert asset.total_reserved == 0


@settings(max_examples=150, deadline=None)
@given(commands=st.lists(COMMANDS, max_size=40))
@example(commands=[("invest", "carol", 200_000), ("force_transfer", "carol", "alice", 2)])
def test_random_commands_keep_the_invariants_and_replaying_rebuilds_the_asset(
    commands: list[tuple[Any, ...]],
) -> None:
    limits = {"authorized_supply": 60, "max_holders": 2, "max_balance": 40, "lockup_seconds": HOUR}
    asset = Asset.register(AssetTerms.parse({**ASSET_TERMS, **limits}))
    asset.approve()
    asset.set_offering(True)
    history = new_events(asset)
    now = T0
    for command in commands:
        if command[0] == "wait":
            now += timedelta(seconds=command[1])
            continue
        before = copy.deepcopy(vars(asset))
        try:
            run_command(asset, command, now)
        except LedgerError:
            assert vars(asset) == before
        history += new_events(asset)
        assert_invariants(asset)
    replayed: Any = None
    for event in history:
        replayed = event.mutate(replayed)
    assert vars(replayed) == vars(asset)

"""Primary issuance rules (SPEC 4.1-4.3): offering, eligibility, limits, pricing, payment lifecycle.

Given an asset (and investor) built from their own events, when an investment is
placed, confirmed or cancelled, then the new events, or the rejection's `code`
with nothing recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.asset import Asset, price_purchase
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor
from ledger.domain.terms import AssetTerms, InvestorRegistration
from tests.support import ASSET_TERMS
from tests.unit.test_asset_rules import T0, asset_held_by, new_asset, new_events, rejected

PRICE = ASSET_TERMS["unit_price"]  # 100_000 minor units per token, decimals 0
ALLOWED = ["ID", "SG"]


def place(asset: Asset, investor_id: str, amount: int, eligible: bool = True) -> Investment:
    """When: an investor places an investment (what the application does, minus the store)."""
    purchase = asset.check_investment(investor_id, eligible, amount)
    investment = Investment.place(investor_id, asset.asset_id, amount, purchase)
    asset.reserve(investment.id, investor_id, purchase.quantity)
    return investment


def settle(asset: Asset, investment: Investment, now: datetime = T0) -> None:
    investment.confirm_payment("bank-ref-1")
    asset.issue(investment.id, investment.investor_id, investment.quantity, now)


def pending_investment(asset: Asset, investor_id: str, amount: int) -> Investment:
    investment = place(asset, investor_id, amount)
    investment.collect_events()
    asset.collect_events()
    return investment


def given_investment(asset: Asset, investor_id: str, amount: int, *, settled: bool) -> None:
    """Given: an investment still waiting for its payment, or paid and issued."""
    investment = pending_investment(asset, investor_id, amount)
    if settled:
        settle(asset, investment)
        asset.collect_events()


def investor(
    country: str = "ID", accredited: bool = False, kyc: str = "approved", expires_at: datetime | None = None
) -> Investor:
    person = Investor.register(InvestorRegistration("alice", country, "0x" + "ab" * 20, accredited))
    if kyc != "pending":
        person.update_kyc(kyc, expires_at)
    person.collect_events()
    return person


# ----- accepted investments -----


def test_an_accepted_investment_is_pending_payment_and_reserves_its_tokens() -> None:
    asset = new_asset()
    investment = place(asset, "alice", 250_000)
    placed = new_events(investment)
    assert [type(e) for e in placed] == [Investment.Placed]
    assert (placed[0].investor_id, placed[0].asset_id, placed[0].amount) == ("alice", asset.asset_id, 250_000)
    assert (investment.quantity, investment.accepted_amount, investment.refund_amount) == (2, 200_000, 50_000)
    assert investment.status == "pending_payment"
    reserved = new_events(asset)
    assert [(type(e), e.investment_id, e.investor_id, e.quantity) for e in reserved] == [
        (Asset.SupplyReserved, investment.id, "alice", 2)
    ]
    assert (asset.total_reserved, asset.total_supply, asset.balances) == (2, 0, {})


def test_confirming_payment_settles_the_investment_and_issues_the_tokens() -> None:
    asset = new_asset()
    investment = pending_investment(asset, "alice", 300_000)
    settle(asset, investment, now=T0 + timedelta(hours=1))
    confirmed = new_events(investment)
    assert [(type(e), e.payment_ref) for e in confirmed] == [(Investment.PaymentConfirmed, "bank-ref-1")]
    assert investment.status == "settled"
    issued = new_events(asset)
    assert [(type(e), e.investor_id, e.quantity, e.issued_at) for e in issued] == [
        (Asset.TokensIssued, "alice", 3, T0 + timedelta(hours=1))
    ]
    assert (asset.balances, asset.total_supply, asset.total_reserved) == ({"alice": 3}, 3, 0)


def test_a_paused_asset_still_accepts_and_issues_investments() -> None:
    asset = new_asset()
    asset.pause()
    investment = place(asset, "alice", 100_000)
    settle(asset, investment)
    assert asset.balances == {"alice": 1}


def test_a_tokenized_asset_with_an_open_offering_accepts_investments() -> None:
    asset = new_asset()
    asset.bind_token(31337, "0x" + "11" * 20, "0x" + "22" * 20)
    place(asset, "alice", 100_000)
    assert asset.total_reserved == 1


def test_cancelling_releases_the_reserved_supply() -> None:
    asset = new_asset(authorized_supply=5)
    investment = pending_investment(asset, "alice", 500_000)
    with rejected(asset, "authorized_supply_exceeded"):
        asset.check_investment("bob", True, 100_000)
    investment.cancel()
    asset.release(investment.id, "alice", 5)
    assert [type(e) for e in new_events(investment)] == [Investment.Cancelled]
    assert [type(e) for e in new_events(asset)] == [Asset.ReservationReleased]
    assert investment.status == "cancelled"
    assert asset.check_investment("bob", True, 500_000).quantity == 5


# ----- pricing -----


@pytest.mark.parametrize(
    ("amount", "unit_price", "decimals", "quantity", "accepted", "refund"),
    [
        (250_000, 100_000, 0, 2, 200_000, 50_000),
        (99_999, 100_000, 0, 0, 0, 99_999),
        (10, 3, 0, 3, 9, 1),
        (250_050, 100_000, 2, 250, 250_000, 50),
        (1, 7, 6, 142_857, 1, 0),
        (10, 3, 18, 3_333_333_333_333_333_333, 10, 0),
    ],
)
def test_an_amount_buys_the_floor_quantity_and_the_rest_is_refunded(
    amount: int, unit_price: int, decimals: int, quantity: int, accepted: int, refund: int
) -> None:
    purchase = price_purchase(amount, unit_price, decimals)
    bought = (purchase.quantity, purchase.accepted_amount, purchase.refund_amount)
    assert bought == (quantity, accepted, refund)


@given(
    amount=st.integers(min_value=0, max_value=10**30),
    unit_price=st.integers(min_value=1, max_value=10**12),
    decimals=st.integers(min_value=0, max_value=18),
)
def test_the_quantity_is_the_most_the_amount_pays_for(amount: int, unit_price: int, decimals: int) -> None:
    purchase = price_purchase(amount, unit_price, decimals)
    scale = Fraction(10**decimals)
    exact_cost = purchase.quantity * unit_price / scale
    assert purchase.accepted_amount == -(-exact_cost.numerator // exact_cost.denominator)
    assert 0 <= purchase.accepted_amount <= amount
    assert (purchase.quantity + 1) * unit_price / scale > amount
    assert purchase.accepted_amount + purchase.refund_amount == amount


# ----- rejections -----


def test_investing_in_a_draft_asset_is_rejected() -> None:
    asset = Asset.register(AssetTerms.parse(ASSET_TERMS))
    asset.collect_events()
    with rejected(asset, "asset_not_offering"):
        asset.check_investment("alice", True, 100_000)


def test_investing_in_an_approved_asset_whose_offering_never_opened_is_rejected() -> None:
    asset = Asset.register(AssetTerms.parse(ASSET_TERMS))
    asset.approve()
    asset.collect_events()
    with rejected(asset, "asset_not_offering"):
        asset.check_investment("alice", True, 100_000)


def test_investing_after_the_offering_closed_is_rejected() -> None:
    asset = new_asset()
    asset.set_offering(False)
    asset.collect_events()
    with rejected(asset, "asset_not_offering"):
        asset.check_investment("alice", True, 100_000)


def test_investing_by_an_ineligible_investor_is_rejected() -> None:
    asset = new_asset()
    with rejected(asset, "investor_not_eligible"):
        asset.check_investment("alice", False, 100_000)


def test_investing_below_the_minimum_is_rejected_and_the_minimum_is_accepted() -> None:
    asset = new_asset(min_investment=200_000)
    with rejected(asset, "amount_below_minimum"):
        asset.check_investment("alice", True, 199_999)
    assert asset.check_investment("alice", True, 200_000).quantity == 2


def test_investing_above_the_maximum_is_rejected_and_the_maximum_is_accepted() -> None:
    asset = new_asset(max_investment=500_000)
    with rejected(asset, "amount_above_maximum"):
        asset.check_investment("alice", True, 500_001)
    assert asset.check_investment("alice", True, 500_000).quantity == 5


def test_an_amount_that_buys_no_base_unit_is_rejected() -> None:
    asset = new_asset(min_investment=0)
    with rejected(asset, "amount_too_small"):
        asset.check_investment("alice", True, PRICE - 1)


@pytest.mark.parametrize("settled", [True, False], ids=["issued", "reserved"])
def test_investing_beyond_the_authorized_supply_is_rejected(settled: bool) -> None:
    asset = new_asset(authorized_supply=10)
    given_investment(asset, "alice", 800_000, settled=settled)
    with rejected(asset, "authorized_supply_exceeded"):
        asset.check_investment("bob", True, 300_000)
    assert asset.check_investment("bob", True, 200_000).quantity == 2


@pytest.mark.parametrize("settled", [True, False], ids=["holder", "pending investor"])
def test_a_new_investor_beyond_max_holders_is_rejected(settled: bool) -> None:
    asset = new_asset(max_holders=1)
    given_investment(asset, "alice", 100_000, settled=settled)
    with rejected(asset, "max_holders_exceeded"):
        asset.check_investment("bob", True, 100_000)
    assert asset.check_investment("alice", True, 100_000).quantity == 1


@pytest.mark.parametrize("settled", [True, False], ids=["held", "reserved"])
def test_investing_beyond_max_balance_is_rejected(settled: bool) -> None:
    asset = new_asset(max_balance=5)
    given_investment(asset, "alice", 300_000, settled=settled)
    with rejected(asset, "max_balance_exceeded"):
        asset.check_investment("alice", True, 300_000)
    assert asset.check_investment("alice", True, 200_000).quantity == 2


@pytest.mark.parametrize(
    ("terms", "holdings", "closed", "eligible", "amount", "code"),
    [
        pytest.param(
            {}, {}, True, False, 100_000, "asset_not_offering", id="asset_not_offering>not_eligible"
        ),
        pytest.param(
            {}, {}, False, False, 1, "investor_not_eligible", id="investor_not_eligible>amount_below_minimum"
        ),
        pytest.param(
            {}, {}, False, True, 50_000, "amount_below_minimum", id="below_minimum>amount_too_small"
        ),
        pytest.param(
            {"max_investment": 500_000, "authorized_supply": 3},
            {},
            False,
            True,
            600_000,
            "amount_above_maximum",
            id="above_maximum>authorized_supply_exceeded",
        ),
        pytest.param(
            {"min_investment": 0, "max_holders": 1},
            {"alice": 1},
            False,
            True,
            50_000,
            "amount_too_small",
            id="amount_too_small>max_holders_exceeded",
        ),
        pytest.param(
            {"authorized_supply": 10, "max_holders": 1},
            {"alice": 10},
            False,
            True,
            100_000,
            "authorized_supply_exceeded",
            id="authorized_supply_exceeded>max_holders_exceeded",
        ),
        pytest.param(
            {"max_holders": 1, "max_balance": 2},
            {"alice": 1},
            False,
            True,
            300_000,
            "max_holders_exceeded",
            id="max_holders_exceeded>max_balance_exceeded",
        ),
    ],
)
def test_when_several_investment_rules_fail_the_first_listed_wins(
    terms: dict[str, Any], holdings: dict[str, int], closed: bool, eligible: bool, amount: int, code: str
) -> None:
    asset = asset_held_by(holdings, **terms)
    if closed:
        asset.set_offering(False)
        asset.collect_events()
    with rejected(asset, code):
        asset.check_investment("bob", eligible, amount)


# ----- eligibility -----


@pytest.mark.parametrize(
    ("person", "terms", "eligible"),
    [
        pytest.param(investor(), {}, True, id="kyc approved"),
        pytest.param(investor(kyc="pending"), {}, False, id="kyc pending"),
        pytest.param(investor(kyc="rejected"), {}, False, id="kyc rejected"),
        pytest.param(investor(kyc="revoked"), {}, False, id="kyc revoked"),
        pytest.param(investor(expires_at=T0 + timedelta(seconds=1)), {}, True, id="kyc expires later"),
        pytest.param(investor(expires_at=T0), {}, False, id="kyc expires now"),
        pytest.param(investor(expires_at=T0 - timedelta(days=1)), {}, False, id="kyc expired"),
        pytest.param(investor(country="SG"), {"allowed_countries": ALLOWED}, True, id="country allowed"),
        pytest.param(investor(country="US"), {"allowed_countries": ALLOWED}, False, id="country not allowed"),
        pytest.param(investor(accredited=True), {"accredited_only": True}, True, id="accredited"),
        pytest.param(investor(accredited=False), {"accredited_only": True}, False, id="not accredited"),
        pytest.param(
            investor(kyc="revoked", accredited=True),
            {"accredited_only": True},
            False,
            id="accredited, kyc revoked",
        ),
    ],
)
def test_an_investor_is_eligible_only_with_valid_kyc_an_allowed_country_and_accreditation_if_required(
    person: Investor, terms: dict[str, Any], eligible: bool
) -> None:
    assert person.eligible_for(new_asset(**terms), T0) is eligible


def test_a_kyc_update_is_recorded_with_its_expiry() -> None:
    person = investor(kyc="pending")
    person.update_kyc("approved", T0)
    events = new_events(person)
    assert [(type(e), e.status, e.expires_at) for e in events] == [(Investor.KycUpdated, "approved", T0)]


# ----- payment lifecycle -----


def test_confirming_a_settled_investment_again_is_invalid_state() -> None:
    asset = new_asset()
    investment = pending_investment(asset, "alice", 100_000)
    settle(asset, investment)
    investment.collect_events()
    asset.collect_events()
    with rejected(investment, "invalid_state"):
        investment.confirm_payment("bank-ref-2")
    with rejected(asset, "invalid_state"):
        asset.issue(investment.id, "alice", 1, T0)


def test_confirming_a_cancelled_investment_is_invalid_state() -> None:
    investment = pending_investment(new_asset(), "alice", 100_000)
    investment.cancel()
    investment.collect_events()
    with rejected(investment, "invalid_state"):
        investment.confirm_payment("bank-ref-1")


@pytest.mark.parametrize("settled", [True, False], ids=["settled", "cancelled"])
def test_cancelling_an_investment_that_is_no_longer_pending_is_invalid_state(settled: bool) -> None:
    asset = new_asset()
    investment = pending_investment(asset, "alice", 100_000)
    if settled:
        settle(asset, investment)
    else:
        investment.cancel()
    investment.collect_events()
    with rejected(investment, "invalid_state"):
        investment.cancel()


def test_releasing_or_issuing_more_than_was_reserved_is_invalid_state() -> None:
    asset = new_asset()
    pending_investment(asset, "alice", 100_000)
    with rejected(asset, "invalid_state"):
        asset.release(uuid4(), "alice", 2)
    with rejected(asset, "invalid_state"):
        asset.issue(uuid4(), "bob", 1, T0)

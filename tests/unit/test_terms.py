"""Asset terms and an investor's registration are declared once; the request models, the CLI
options and the registration events follow their fields."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from adapters.api.schemas import AssetIn, InvestorIn
from adapters.cli import asset_register, investor_register
from ledger.domain.asset import Asset
from ledger.domain.investor import Investor
from ledger.domain.terms import AssetTerms, InvestorRegistration, Terms
from ledger.errors import ValidationError

TERMS = {
    "asset_id": "WATER-01",
    "name": "Water plant",
    "symbol": "W1",
    "decimals": 0,
    "currency": "IDR",
    "unit_price": "1000",
    "authorized_supply": 10**6,
    "min_investment": 1000,
    "max_investment": 10**9,
    "allowed_countries": ["SG", "ID", "ID"],
}


def names(terms: type[Terms]) -> list[str]:
    return [f.name for f in dataclasses.fields(terms)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("terms", "model"), [(AssetTerms, AssetIn), (InvestorRegistration, InvestorIn)])
def test_the_request_model_has_the_fields_of_the_terms_in_their_order(
    terms: type[Terms], model: type
) -> None:
    assert list(model.model_fields) == names(terms)


@pytest.mark.parametrize(
    ("terms", "command"), [(AssetTerms, asset_register), (InvestorRegistration, investor_register)]
)
def test_the_cli_command_takes_the_fields_of_the_terms(terms: type[Terms], command: object) -> None:
    parameters = list(inspect.signature(command).parameters)  # type: ignore[arg-type]
    assert parameters == [*names(terms), "key", "as_json"]


def test_terms_are_checked_and_normalised_when_made() -> None:
    terms = AssetTerms.parse(TERMS)
    assert (terms.unit_price, terms.allowed_countries, terms.max_holders) == (1000, ("ID", "SG"), None)
    with pytest.raises(ValidationError, match="max_investment must not be below min_investment"):
        AssetTerms.parse({**TERMS, "max_investment": 1})
    with pytest.raises(ValidationError, match="unknown fields: colour"):
        AssetTerms.parse({**TERMS, "colour": "blue"})
    with pytest.raises(ValidationError, match="missing fields: name"):
        AssetTerms.parse({k: v for k, v in TERMS.items() if k != "name"})


def test_the_registration_events_carry_the_terms_as_they_did() -> None:
    asset = Asset.register(AssetTerms.parse(TERMS))
    registered = asset.collect_events()[0]
    assert AssetTerms.row_of(registered) == AssetTerms.parse(TERMS).payload()
    assert registered.allowed_countries == ["ID", "SG"]  # type: ignore[attr-defined]
    registration = InvestorRegistration("alice", "ID", "0x" + "ab" * 20, False)
    event = Investor.register(registration).collect_events()[0]
    assert InvestorRegistration.row_of(event) == registration.payload()
    assert registration.wallet.lower() == "0x" + "ab" * 20  # checksummed when made

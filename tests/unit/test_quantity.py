"""`Quantity` says how a quantity or an amount is read and written; answers follow their models."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel, ValidationError

from adapters.api.common import event_data, exact
from adapters.api.responses import CapTable
from ledger.domain.asset import Asset
from ledger.domain.quantity import Quantity


class Order(BaseModel):
    quantity: Quantity


@pytest.mark.parametrize(("given", "read"), [(5, 5), ("12", 12), ("0", 0), (10**30, 10**30)])
def test_a_quantity_is_read_from_a_json_integer_or_a_string_of_digits(given: object, read: int) -> None:
    assert Order.model_validate({"quantity": given}).quantity == read


@pytest.mark.parametrize("given", [1.0, True, "1.5", "", "-1", " 1", "1e3", None, "9" * 41])
def test_a_quantity_is_never_a_float_a_bool_or_other_text(given: object) -> None:
    with pytest.raises(ValidationError):
        Order.model_validate({"quantity": given})


def test_a_quantity_is_written_as_a_string_of_digits() -> None:
    assert Order(quantity=10**30).model_dump_json() == '{"quantity":"' + "1" + "0" * 30 + '"}'


def test_an_answer_writes_quantities_as_digits_and_counts_as_numbers() -> None:
    @dataclasses.dataclass
    class Holder:
        investor_id: str
        quantity: int
        frozen: int
        ownership_bps: int

    body = {"asset_id": "A", "total_supply": 7, "holder_count": 1, "holders": [Holder("x", 7, 0, 10_000)]}
    assert exact(body, CapTable) == {
        "asset_id": "A",
        "total_supply": "7",
        "holder_count": 1,
        "holders": [{"investor_id": "x", "quantity": "7", "frozen": "0", "ownership_bps": 10_000}],
    }


def test_stored_event_data_writes_integers_as_digits_unless_its_class_says_count() -> None:
    data = {"decimals": 0, "unit_price": 100, "max_holders": None, "lockup_seconds": 60, "asset_version": 3}
    assert event_data(Asset.Registered, data) == {
        "decimals": 0,
        "unit_price": "100",
        "max_holders": None,
        "lockup_seconds": 60,
        "asset_version": "3",
    }
    assert event_data(None, {"decimals": 0}) == {"decimals": "0"}

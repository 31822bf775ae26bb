"""Valuations of an asset (SPEC 4.8): an immutable event with a positive price, dated neither in
the future nor before the asset's registration; a rejected valuation changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.domain.asset import Asset
from tests.unit.test_asset_rules import new_asset, rejected


def test_a_valuation_is_recorded_as_an_event() -> None:
    asset = new_asset()
    now = asset.created_on + timedelta(days=30)
    asset.value(1_250_000, asset.created_on + timedelta(days=29), "appraiser KJPP", "income approach", now)
    (event,) = asset.collect_events()
    assert isinstance(event, Asset.Valued)
    assert (event.price_per_token, event.source, event.method) == (
        1_250_000,
        "appraiser KJPP",
        "income approach",
    )
    assert event.valued_at == asset.created_on + timedelta(days=29)


def test_a_valuation_dated_at_registration_or_now_is_accepted() -> None:
    asset = new_asset()
    now = asset.created_on + timedelta(days=1)
    asset.value(1, asset.created_on, "NAV-1", None, now)
    asset.value(1, now, "NAV-2", None, now)
    assert len(asset.collect_events()) == 2


@pytest.mark.parametrize("price", [0, -1, -1_000_000])
def test_a_valuation_without_a_positive_price_is_invalid(price: int) -> None:
    asset = new_asset()
    with rejected(asset, "invalid_valuation"):
        asset.value(price, asset.created_on, "NAV", None, asset.created_on + timedelta(days=1))
    assert asset.collect_events() == []


def test_a_valuation_dated_in_the_future_is_invalid() -> None:
    asset = new_asset()
    now = asset.created_on + timedelta(days=1)
    with rejected(asset, "invalid_valuation"):
        asset.value(100, now + timedelta(seconds=1), "NAV", None, now)
    assert asset.collect_events() == []


def test_a_valuation_dated_before_registration_is_invalid() -> None:
    asset = new_asset()
    with rejected(asset, "invalid_valuation"):
        asset.value(100, asset.created_on - timedelta(seconds=1), "NAV", None, asset.created_on)
    assert asset.collect_events() == []


def test_a_zero_price_wins_over_a_bad_date() -> None:
    asset = new_asset()
    with rejected(asset, "invalid_valuation"):
        asset.value(0, asset.created_on - timedelta(days=1), "NAV", None, asset.created_on)

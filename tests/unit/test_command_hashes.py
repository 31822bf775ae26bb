"""A command's idempotency payload is what its request hash is made of, and stored idempotency
records keep that hash: typing a command's input must not change it. Each command's hash for a
sample input is pinned here (computed before the command was typed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.commit import Command
from ledger.config import store_env

ASSET, ALICE, BOB = "TOLL-ROAD-A7", "inv-alice", "inv-bob"
WALLET, OTHER = "0x" + "ab" * 20, "0x" + "cd" * 20
UUID = "6f1c1a4e-2b7d-4c8e-9a0b-3d5e7f9a1b2c"

SAMPLES: dict[str, tuple[Callable[[LedgerApplication], Any], str]] = {
    "approve_asset": (
        lambda a: a.approve_asset(ASSET),
        "5a4dd9b0b1c0dcc710c3e12d9858c01d7487ae95c3135546a84ced73f3ac46c5",
    ),
    "pause_asset": (
        lambda a: a.pause_asset(ASSET),
        "e95111e7db162e6712e87a900c5c91af7e5c584d5121e3171bc6e631e62c491f",
    ),
    "unpause_asset": (
        lambda a: a.unpause_asset(ASSET),
        "b8c786b1aeb35b0e5e3374afb0a5f1b784140c530b688abdb025a9932536d11a",
    ),
    "cancel_investment": (
        lambda a: a.cancel_investment(UUID.upper()),
        "333059ea52da56bf9384567567365cc85ea9c99f341c7b36bc0d89895a434a31",
    ),
    "set_offering": (
        lambda a: a.set_offering(ASSET, True),
        "2ce8ae45848aae327178652f34e28b774515e9a0f7c5cfcfdab92f7ee3d8e01d",
    ),
    "bind_token": (
        lambda a: a.bind_token(ASSET, 31337, WALLET, OTHER),
        "2283c0ddc8ac94c57188a756e58099d52db2ad115102ce917745702e91b7bb92",
    ),
    "freeze_tokens": (
        lambda a: a.freeze_tokens(ASSET, ALICE, "250"),
        "eea5ade21fbefc8a31b3290e98fd6052c52111089a48bbf1a4ed535a9772c55f",
    ),
    "unfreeze_tokens": (
        lambda a: a.unfreeze_tokens(ASSET, ALICE, 250),
        "2eef514aa1c1466ab08bd89b8f97187258a1df3227fa02ff41bfc8d568cce1d0",
    ),
    "freeze_investor": (
        lambda a: a.freeze_investor(ASSET, ALICE),
        "72ed9ab00af7bfbd27109a900205b3a0d017ba95d39df025f525c0f8ba0e6ad4",
    ),
    "unfreeze_investor": (
        lambda a: a.unfreeze_investor(ASSET, ALICE),
        "ff0fdcbabc6d20208d91c794d0aa41608d7b3d5d0d25c695471f04e1b8503bec",
    ),
    "record_valuation": (
        lambda a: a.record_valuation(ASSET, "1050", "2026-06-30T12:00:00+02:00", "NAV report 7", "DCF"),
        "7094f812b9ccd3c99fe1378b7485811daf62e0b8fd00ad98d183ab95286e990d",
    ),
    "record_valuation without method": (
        lambda a: a.record_valuation(ASSET, 1050, "2026-06-30T10:00:00Z", "appraiser"),
        "4b5b4e6bf9b4385442153fe76d7073025b1d99e30a39bb3aaa98911b94fd331c",
    ),
    "update_kyc": (
        lambda a: a.update_kyc(ALICE, "approved", "2027-01-01T00:00:00Z"),
        "1bc55d83d1d54bd2d8209943dea460b1316195199f105b855a9eb4ac43becd2b",
    ),
    "update_kyc without expiry": (
        lambda a: a.update_kyc(ALICE, "revoked"),
        "82cefa6212afa588c257c3f0fc2dd5a064ab74706eed7a55b8c3d4a03f6e4fa5",
    ),
    "add_wallet": (
        lambda a: a.add_wallet(ALICE, WALLET),
        "c0b8f180fcd1c5f5fba54b029960c0539f1dc4450bad5112fa1f385b9f7b28e0",
    ),
    "recover_wallet": (
        lambda a: a.recover_wallet(ALICE, WALLET, OTHER),
        "6b623e74d88a0c57d714ef3b2d4f4eb667a03376ad25b3e5a20b9e48926b8af9",
    ),
    "confirm_payment": (
        lambda a: a.confirm_payment(UUID, "wire 42"),
        "fbdd453416384eadfd75b78582a4da245aef2b92738ec9a2b5716d12917e6dc2",
    ),
    "pay_distribution": (
        lambda a: a.pay_distribution(UUID, BOB),
        "1279923b53147856ceb290e5755f0b54341e6ae26f2e1b1f508b274fd39bd4e1",
    ),
    "pay_distribution to all": (
        lambda a: a.pay_distribution(UUID),
        "15678d332a0e9331b57781aee542e9c4c6268201275432a5fa9ee31cd888bf20",
    ),
    "create_proposal": (
        lambda a: a.create_proposal(
            ASSET, "Extend the concession", ["yes", "no"], "5000", "2027-01-01T00:00:00Z"
        ),
        "cabd858556c17ac5d28798d82f169894646e0155cffc21686d0a8736f3eb4df1",
    ),
    "create_proposal without closing": (
        lambda a: a.create_proposal(ASSET, "Dissolve", ["for", "against"], 0),
        "3738154d0c6fa69d425bb14d95b397d69d4eb210f378b380c9bf89e6f464c77d",
    ),
    "cast_vote": (
        lambda a: a.cast_vote(UUID, ALICE, "yes"),
        "40be539d5a8fe671dad16d4e3dcdc67663d03ea04d5f364629c7846e699c85ba",
    ),
    "close_proposal": (
        lambda a: a.close_proposal(UUID.upper()),
        "3bf0ef8aa257d1aff13b821ddaaba52e0abec553767177746f57e0cb3df11c2f",
    ),
    "transfer": (
        lambda a: a.transfer(ASSET, ALICE, BOB, "100"),
        "0d2e9560216fca19309ca453a11df789cf6fe086085aaa0b21e608d64da5e2fb",
    ),
    "forced transfer": (
        lambda a: a.transfer(ASSET, ALICE, BOB, 100, True),
        "db21d4691d97516777a0daa0961db685898c537e07cb271d766ec5aba389b84a",
    ),
    "redeem": (
        lambda a: a.redeem(ASSET, ALICE, 7),
        "76a4811a59fb6d9a2b456e40647548e7a4daf9c3b6b2d415ce24dfe05072de27",
    ),
    "place_investment": (
        lambda a: a.place_investment(ALICE, ASSET, "100000"),
        "9056a8c4dc6854b2ebd4ddc02e1237eee240bb4473c976d650aba3ac8cf1e3b7",
    ),
    "declare_distribution": (
        lambda a: a.declare_distribution(ASSET, 5000, 12),
        "b9b8b503f51e9b0207301b4cffa656a0fe78d8195cc9e911123707e380d9b0e1",
    ),
}


class SentError(Exception):
    """Stops a command once it is made: only its request hash is wanted."""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerApplication]:
    app = LedgerApplication(store_env(f"sqlite:///{Path(tmp_path_factory.mktemp('hashes')) / 'ledger.db'}"))
    try:
        yield app
    finally:
        app.close()


def request_hash(app: LedgerApplication, call: Callable[[LedgerApplication], Any]) -> str:
    sent: list[Command] = []

    def execute(command: Command) -> Any:
        sent.append(command)
        raise SentError

    committer, app.committer = app.committer, type("Capture", (), {"execute": staticmethod(execute)})()  # type: ignore[assignment]
    try:
        with pytest.raises(SentError):
            call(app)
    finally:
        app.committer = committer
    return sent[0].request_hash


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_a_commands_request_hash_is_unchanged_by_typing_its_input(
    app: LedgerApplication, sample: str
) -> None:
    call, expected = SAMPLES[sample]
    assert request_hash(app, call) == expected

"""The T-REX client against a real anvil: suite deployment, onboarding, every token operation, logs."""

from __future__ import annotations

import pytest
from eth_account import Account

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.events import LogDecoder, UnknownLogError
from adapters.chain.trex import (
    ChainRevertedError,
    NonceConflictError,
    Suite,
    TokenCall,
    TrexClient,
)
from tests.chain.conftest import ID, SG

pytestmark = pytest.mark.anvil

ALICE, BOB, CAROL, ALICE_NEW = (Account.from_key(k).address for k in DEV_KEYS[1:5])
ALICE_KEY = DEV_KEYS[1]


def onboard(client: TrexClient, suite: Suite, *wallets: str) -> None:
    for wallet in wallets:
        client.ensure_identity(suite, wallet, ID)


def mint(client: TrexClient, suite: Suite, wallet: str, amount: int) -> None:
    client.agent_call(suite, TokenCall("mint", {"to": wallet, "amount": amount}))


def test_deployed_suite_is_paused_with_no_supply(trex_client: TrexClient, suite: Suite) -> None:
    assert suite.chain_id == 31337
    assert trex_client.paused(suite)
    assert trex_client.total_supply(suite) == 0
    assert Suite.from_dict(suite.as_dict()) == suite
    assert suite.deployed_at_block <= trex_client.block_number()


def test_second_suite_reuses_the_shared_infrastructure(trex_client: TrexClient, suite: Suite) -> None:
    before = trex_client.transaction_count()
    other = trex_client.deploy_suite(name="Port", symbol="PRT", decimals=2, countries=[SG], salt="PRT")
    assert trex_client.transaction_count() == before + 1
    assert (other.id_factory, other.claim_issuer) == (suite.id_factory, suite.claim_issuer)
    assert other.token != suite.token


def test_ensure_identity_is_idempotent(trex_client: TrexClient, suite: Suite) -> None:
    assert not trex_client.is_verified(suite, ALICE)
    trex_client.ensure_identity(suite, ALICE, ID)
    identity = trex_client.identity_of(suite, ALICE)
    nonce = trex_client.transaction_count()
    trex_client.ensure_identity(suite, ALICE, ID)
    assert trex_client.transaction_count() == nonce
    assert trex_client.identity_of(suite, ALICE) == identity
    assert trex_client.is_verified(suite, ALICE)


def test_an_identity_is_reused_by_a_second_suite(trex_client: TrexClient, suite: Suite) -> None:
    other = trex_client.deploy_suite(name="Port", symbol="PRT", decimals=0, countries=[ID], salt="PRT")
    onboard(trex_client, suite, ALICE)
    onboard(trex_client, other, ALICE)
    assert trex_client.identity_of(other, ALICE) == trex_client.identity_of(suite, ALICE)
    assert trex_client.is_verified(other, ALICE)


def test_mint_credits_a_verified_wallet(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 1_000)
    assert trex_client.balance_of(suite, ALICE) == 1_000
    assert trex_client.total_supply(suite) == 1_000


def test_mint_to_an_unverified_wallet_is_refused_before_signing(
    trex_client: TrexClient, suite: Suite
) -> None:
    nonce = trex_client.next_nonce()
    with pytest.raises(ChainRevertedError, match="Identity is not verified"):
        trex_client.sign(suite, TokenCall("mint", {"to": BOB, "amount": 1}), nonce)
    assert trex_client.next_nonce() == nonce


def test_forced_transfer_moves_tokens(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE, BOB)
    mint(trex_client, suite, ALICE, 1_000)
    trex_client.agent_call(suite, TokenCall("forced_transfer", {"from_": ALICE, "to": BOB, "amount": 300}))
    assert trex_client.balance_of(suite, ALICE) == 700
    assert trex_client.balance_of(suite, BOB) == 300


def test_partial_freeze_and_unfreeze(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 1_000)
    trex_client.agent_call(suite, TokenCall("freeze_partial", {"user": ALICE, "amount": 400}))
    assert trex_client.frozen_of(suite, ALICE) == 400
    trex_client.agent_call(suite, TokenCall("unfreeze_partial", {"user": ALICE, "amount": 150}))
    assert trex_client.frozen_of(suite, ALICE) == 250
    assert trex_client.balance_of(suite, ALICE) == 1_000


def test_address_freeze_toggles(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    trex_client.agent_call(suite, TokenCall("set_address_frozen", {"user": ALICE, "frozen": True}))
    assert trex_client.is_frozen(suite, ALICE)
    trex_client.agent_call(suite, TokenCall("set_address_frozen", {"user": ALICE, "frozen": False}))
    assert not trex_client.is_frozen(suite, ALICE)


def test_unpause_and_pause(trex_client: TrexClient, suite: Suite) -> None:
    trex_client.agent_call(suite, TokenCall("unpause"))
    assert not trex_client.paused(suite)
    trex_client.agent_call(suite, TokenCall("pause"))
    assert trex_client.paused(suite)


def test_burn_reduces_balance_and_supply(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 1_000)
    trex_client.agent_call(suite, TokenCall("burn", {"user": ALICE, "amount": 250}))
    assert trex_client.balance_of(suite, ALICE) == 750
    assert trex_client.total_supply(suite) == 750


def test_recovery_moves_balance_freezes_and_identity_to_the_new_wallet(
    trex_client: TrexClient, suite: Suite
) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 1_000)
    trex_client.agent_call(suite, TokenCall("freeze_partial", {"user": ALICE, "amount": 100}))
    identity = trex_client.identity_of(suite, ALICE)
    trex_client.prepare_recovery(suite, ALICE, ALICE_NEW)
    nonce = trex_client.transaction_count()
    trex_client.prepare_recovery(suite, ALICE, ALICE_NEW)
    assert trex_client.transaction_count() == nonce
    trex_client.agent_call(suite, TokenCall("recover", {"lost": ALICE, "new": ALICE_NEW}))
    assert trex_client.balance_of(suite, ALICE) == 0
    assert trex_client.balance_of(suite, ALICE_NEW) == 1_000
    assert trex_client.frozen_of(suite, ALICE_NEW) == 100
    assert trex_client.identity_of(suite, ALICE_NEW) == identity
    assert trex_client.identity_of(suite, ALICE) is None


def test_recovery_without_the_new_key_is_refused(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 10)
    with pytest.raises(ChainRevertedError, match="Recovery not possible"):
        trex_client.sign(
            suite, TokenCall("recover", {"lost": ALICE, "new": ALICE_NEW}), trex_client.next_nonce()
        )


def test_holder_transfer_between_verified_wallets(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE, BOB)
    mint(trex_client, suite, ALICE, 100)
    trex_client.agent_call(suite, TokenCall("unpause"))
    receipt = trex_client.transfer_from_wallet(suite, ALICE_KEY, BOB, 40)
    assert receipt.ok
    assert (trex_client.balance_of(suite, ALICE), trex_client.balance_of(suite, BOB)) == (60, 40)


def test_balances_read_at_a_past_block(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 100)
    block = trex_client.block_number()
    mint(trex_client, suite, ALICE, 5)
    assert trex_client.balance_of(suite, ALICE, block) == 100
    assert trex_client.total_supply(suite, block) == 100


def test_broadcasting_a_mined_transaction_again_executes_it_once(
    trex_client: TrexClient, suite: Suite
) -> None:
    onboard(trex_client, suite, ALICE)
    signed = trex_client.sign(suite, TokenCall("mint", {"to": ALICE, "amount": 7}), trex_client.next_nonce())
    trex_client.broadcast(signed)
    trex_client.wait_receipt(signed.tx_hash)
    nonce = trex_client.next_nonce()
    trex_client.broadcast(signed)
    assert trex_client.next_nonce() == nonce
    assert trex_client.balance_of(suite, ALICE) == 7


def test_broadcasting_a_pending_transaction_again_executes_it_once(
    anvil: Anvil, trex_client: TrexClient, suite: Suite
) -> None:
    onboard(trex_client, suite, ALICE)
    anvil.set_automine(False)
    signed = trex_client.sign(suite, TokenCall("mint", {"to": ALICE, "amount": 7}), trex_client.next_nonce())
    trex_client.broadcast(signed)
    trex_client.broadcast(signed)
    assert trex_client.receipt(signed.tx_hash) is None
    anvil.mine()
    receipt = trex_client.wait_receipt(signed.tx_hash)
    assert receipt.ok
    assert trex_client.transaction_count() == signed.nonce + 1
    assert trex_client.balance_of(suite, ALICE) == 7


def test_signing_a_batch_simulates_on_the_pending_state(
    anvil: Anvil, trex_client: TrexClient, suite: Suite
) -> None:
    onboard(trex_client, suite, ALICE)
    anvil.set_automine(False)
    nonce = trex_client.next_nonce()
    mint_tx = trex_client.sign(suite, TokenCall("mint", {"to": ALICE, "amount": 10}), nonce)
    trex_client.broadcast(mint_tx)
    freeze_tx = trex_client.sign(suite, TokenCall("freeze_partial", {"user": ALICE, "amount": 5}), nonce + 1)
    trex_client.broadcast(freeze_tx)
    anvil.mine()
    assert trex_client.wait_receipt(freeze_tx.tx_hash).ok
    assert trex_client.frozen_of(suite, ALICE) == 5


def test_a_nonce_taken_by_another_transaction_is_a_conflict(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    nonce = trex_client.next_nonce()
    first = trex_client.sign(suite, TokenCall("mint", {"to": ALICE, "amount": 1}), nonce)
    second = trex_client.sign(suite, TokenCall("mint", {"to": ALICE, "amount": 2}), nonce)
    trex_client.broadcast(first)
    trex_client.wait_receipt(first.tx_hash)
    with pytest.raises(NonceConflictError):
        trex_client.broadcast(second)


def test_every_event_of_the_suite_decodes(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE, BOB)
    calls = [
        TokenCall("mint", {"to": ALICE, "amount": 1_000}),
        TokenCall("forced_transfer", {"from_": ALICE, "to": BOB, "amount": 100}),
        TokenCall("freeze_partial", {"user": ALICE, "amount": 50}),
        TokenCall("unfreeze_partial", {"user": ALICE, "amount": 20}),
        TokenCall("set_address_frozen", {"user": BOB, "frozen": True}),
        TokenCall("unpause"),
        TokenCall("pause"),
        TokenCall("burn", {"user": ALICE, "amount": 10}),
    ]
    for call in calls:
        trex_client.agent_call(suite, call)
    trex_client.update_country(suite, BOB, SG)
    trex_client.prepare_recovery(suite, ALICE, ALICE_NEW)
    trex_client.agent_call(suite, TokenCall("recover", {"lost": ALICE, "new": ALICE_NEW}))
    kinds = suite.contract_kinds()
    logs = trex_client.get_logs(list(kinds), suite.deployed_at_block, trex_client.block_number())
    decoded = [LogDecoder(kinds).decode(log) for log in logs]
    names = {event.name for event in decoded}
    assert {
        "Transfer", "TokensFrozen", "TokensUnfrozen", "AddressFrozen", "Paused", "Unpaused",
        "RecoverySuccess", "IdentityRegistered", "IdentityRemoved", "CountryUpdated",
        "IdentityStored", "IdentityUnstored", "CountryModified",
    } <= names  # fmt: skip
    mint_event = next(e for e in decoded if e.name == "Transfer" and e.args["to"] == ALICE)
    assert mint_event.args == {"from": "0x" + "00" * 20, "to": ALICE, "value": 1_000}
    assert mint_event.address == suite.token
    recovery = next(e for e in decoded if e.name == "RecoverySuccess")
    assert recovery.args["_lostWallet"] == ALICE and recovery.args["_newWallet"] == ALICE_NEW
    country = next(e for e in decoded if e.name == "CountryUpdated")
    assert country.args == {"investorAddress": BOB, "country": SG}
    frozen = next(e for e in decoded if e.name == "AddressFrozen")
    assert frozen.args == {"_userAddress": BOB, "_isFrozen": True, "_owner": trex_client.agent}
    positions = [(e.block_number, e.log_index) for e in decoded]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_identity_and_factory_events_decode(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    identity = trex_client.identity_of(suite, ALICE)
    assert identity is not None
    trex_client.prepare_recovery(suite, ALICE, ALICE_NEW)
    kinds = {identity: "identity", suite.id_factory: "id_factory"}
    logs = trex_client.get_logs(list(kinds), suite.deployed_at_block, trex_client.block_number())
    decoded = [LogDecoder(kinds).decode(log) for log in logs]
    assert {"KeyAdded", "KeyRemoved", "ClaimAdded", "WalletLinked"} <= {e.name for e in decoded}
    claim = next(e for e in decoded if e.name == "ClaimAdded")
    assert claim.args["topic"] == 1 and claim.args["issuer"] == suite.claim_issuer
    assert claim.args["signature"].startswith("0x") and claim.args["uri"] == ""


def test_unknown_logs_are_refused(trex_client: TrexClient, suite: Suite) -> None:
    onboard(trex_client, suite, ALICE)
    mint(trex_client, suite, ALICE, 1)
    log = trex_client.get_logs([suite.token], suite.deployed_at_block, trex_client.block_number())[-1]
    decoder = LogDecoder({suite.token: "token"})
    assert decoder.decode(log).name == "Transfer"
    with pytest.raises(UnknownLogError, match="topic0"):
        decoder.decode({**log, "topics": ["0x" + "ab" * 32, *log["topics"][1:]]})
    with pytest.raises(UnknownLogError, match="unbound address"):
        LogDecoder({suite.identity_registry: "identity_registry"}).decode(log)
    with pytest.raises(UnknownLogError, match="topic0"):  # a token event read as an identity registry's
        LogDecoder({suite.token: "identity_registry"}).decode(log)

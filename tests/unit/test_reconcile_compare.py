"""Property tests of reconciliation's comparison (`adapters.chain.reconcile.compare`).

A random "true" state of one asset (investors with one or more wallets, their
balances, frozen tokens and address freezes, the pause state) gives a ledger side
and a chain side that agree. Random perturbations of the chain side then stand for
what may have happened on chain behind the ledger's back; each calls for exactly
one report (a mint to a known investor for two: the investor's quantity and the
supply). `compare` must report exactly those, each once, and nothing for the
investors, the pause state or the supply that operations still in the outbox
touch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.chain.reconcile import LedgerSide, compare
from ledger.outbox import (
    BURN,
    FORCED_TRANSFER,
    FREEZE_PARTIAL,
    MINT,
    PAUSE,
    PENDING,
    RECOVER,
    SET_ADDRESS_FROZEN,
    UNFREEZE_PARTIAL,
    UNPAUSE,
)
from ledger.store import OutboxRow
from projections.chain import ChainState, WalletPosition

pytestmark = pytest.mark.unit

ASSET = "TOLL-JKT-01"
INVESTORS = ("alice", "bob", "carol", "dave", "erin")
# perturbations of one investor's wallets (the mint last: at most one, so that one supply report is due)
PER_INVESTOR = ("balance", "frozen", "address_freeze", "emptied", "mint")

Report = tuple[str, str | None, str | None]  # (kind, investor, the wallet when no investor owns it)

COMPARE_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def wallet(n: int) -> str:
    return f"0x{n:040x}"


@dataclass
class Truth:
    """What both sides agree on, then the chain side as perturbed and the reports it calls for."""

    paused: bool
    ledger_holders: dict[str, tuple[int, int, bool]]
    owners: dict[str, str]
    positions: dict[str, WalletPosition]
    supply: int
    expected: Counter[Report] = field(default_factory=Counter)

    def ledger(self) -> LedgerSide:
        return LedgerSide(
            1,
            self.paused,
            sum(q for q, _, _ in self.ledger_holders.values()),
            self.ledger_holders,
            self.owners,
            frozenset(self.owners),
        )

    def chain(self, paused: bool) -> ChainState:
        return ChainState(ASSET, 10, paused, self.supply, dict(self.positions))

    def wallets_of(self, investor_id: str) -> list[str]:
        return sorted(w for w, owner in self.owners.items() if owner == investor_id)

    def on_chain(self, investor_id: str) -> list[WalletPosition]:
        return [self.positions.get(w, WalletPosition()) for w in self.wallets_of(investor_id)]


@st.composite
def agreeing_sides(draw: st.DrawFn) -> Truth:
    """Ledger and chain agree: each investor's tokens spread over their wallets (lost ones too)."""
    holders: dict[str, tuple[int, int, bool]] = {}
    owners: dict[str, str] = {}
    positions: dict[str, WalletPosition] = {}
    next_wallet = 1
    for investor_id in INVESTORS:
        balance = draw(st.sampled_from((0, 0, 1, 7, 100, 10**20)))
        frozen = draw(st.integers(0, balance)) if balance else 0
        address_frozen = draw(st.booleans())
        if balance or address_frozen or draw(st.booleans()):  # a former holder may keep a row of zeros
            holders[investor_id] = (balance, frozen, address_frozen)
        count = draw(st.integers(1, 3))
        mine = [wallet(n) for n in range(next_wallet, next_wallet + count)]
        next_wallet += count
        owners.update(dict.fromkeys(mine, investor_id))
        shares = split(draw, balance, count)
        frozen_shares = [draw(st.integers(0, s)) for s in shares[:-1]]
        frozen_shares.append(frozen - sum(frozen_shares))
        if not 0 <= frozen_shares[-1] <= shares[-1]:  # keep 0 <= frozen <= balance per wallet
            frozen_shares = [0] * (count - 1) + [frozen]
            shares = [0] * (count - 1) + [balance]
        flagged = draw(st.integers(0, count - 1))
        for index, w in enumerate(mine):
            position = WalletPosition(
                shares[index], frozen_shares[index], address_frozen and index == flagged
            )
            if position != WalletPosition() or draw(st.booleans()):  # a wallet of zeros may be mirrored
                positions[w] = position
    supply = sum(q for q, _, _ in holders.values())
    return Truth(draw(st.booleans()), holders, owners, positions, supply)


def split(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    cuts = sorted(draw(st.integers(0, total)) for _ in range(parts - 1))
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


def quantity_kind(ledger: int, chain: int) -> str:
    if chain == 0:
        return "missing_on_chain"
    if ledger == 0:
        return "missing_in_ledger"
    return "quantity_mismatch"


def perturb_one(draw: st.DrawFn, truth: Truth, investor_id: str, how: str) -> None:
    """Changes one investor's wallets on chain; expects the report of that change."""
    ledger_quantity, ledger_frozen, ledger_flag = truth.ledger_holders.get(investor_id, (0, 0, False))
    target = draw(st.sampled_from(truth.wallets_of(investor_id)))
    position = truth.positions.get(target, WalletPosition())
    if how == "address_freeze":
        for w in truth.wallets_of(investor_id):
            truth.positions[w] = replace(truth.positions.get(w, WalletPosition()), address_frozen=False)
        if not ledger_flag:
            truth.positions[target] = replace(truth.positions[target], address_frozen=True)
        truth.expected["address_freeze_mismatch", investor_id, None] += 1
        return
    if how == "emptied":  # every wallet of the investor emptied on chain, frozen tokens too
        for w in truth.wallets_of(investor_id):
            truth.positions[w] = replace(truth.positions.get(w, WalletPosition()), balance=0, frozen=0)
        if ledger_quantity:
            truth.expected["missing_on_chain", investor_id, None] += 1
        if ledger_frozen:
            truth.expected["frozen_mismatch", investor_id, None] += 1
        return
    if how == "frozen":
        change = draw(st.integers(-position.frozen, 50).filter(bool))
        truth.positions[target] = replace(position, frozen=position.frozen + change)
        truth.expected["frozen_mismatch", investor_id, None] += 1
        return
    change = (
        draw(st.integers(1, 10**21))
        if how == "mint"
        else draw(st.integers(-position.balance, 50).filter(bool))
    )
    truth.positions[target] = replace(position, balance=position.balance + change)
    if how == "mint":
        truth.supply += change
        truth.expected["supply_mismatch", None, None] += 1
    on_chain = sum(p.balance for p in truth.on_chain(investor_id))
    truth.expected[quantity_kind(ledger_quantity, on_chain), investor_id, None] += 1


@st.composite
def perturbed_sides(draw: st.DrawFn) -> tuple[Truth, bool]:
    """Agreeing sides, then perturbations of the chain side; returns the chain's pause state too."""
    truth = draw(agreeing_sides())
    victims = draw(st.lists(st.sampled_from(INVESTORS), unique=True, max_size=len(INVESTORS)))
    minted = False
    for investor_id in victims:  # one change per investor, so that no two cancel out
        how = draw(st.sampled_from(PER_INVESTOR if not minted else PER_INVESTOR[:-1]))
        minted = minted or how == "mint"
        perturb_one(draw, truth, investor_id, how)
    for n in range(draw(st.integers(0, 2))):  # tokens (or a freeze) on a wallet no investor owns
        stranger = wallet(10_000 + n)
        truth.positions[stranger] = draw(
            st.sampled_from((WalletPosition(5), WalletPosition(3, 3), WalletPosition(0, 0, True)))
        )
        truth.expected["unknown_wallet", None, stranger] += 1
    chain_paused = truth.paused ^ draw(st.booleans())
    if chain_paused != truth.paused:
        truth.expected["pause_mismatch", None, None] += 1
    return truth, chain_paused


def reports(differences: list[dict[str, Any]]) -> Counter[Report]:
    return Counter(
        (d["kind"], d["investor_id"], d["wallets"][0] if d["investor_id"] is None and d["wallets"] else None)
        for d in differences
    )


def pending(seq: int, kind: str, payload: dict[str, Any]) -> OutboxRow:
    return OutboxRow(seq, 100 + seq, ASSET, kind, payload, PENDING, 0, None, None, None, None, None, None, [])


@st.composite
def in_flight(draw: st.DrawFn) -> list[OutboxRow]:
    """Operations still waiting in the outbox, each touching some investors."""
    rows = []
    for seq in range(1, draw(st.integers(1, 4)) + 1):
        kind = draw(
            st.sampled_from(
                (
                    MINT,
                    BURN,
                    FORCED_TRANSFER,
                    FREEZE_PARTIAL,
                    UNFREEZE_PARTIAL,
                    SET_ADDRESS_FROZEN,
                    RECOVER,
                    PAUSE,
                    UNPAUSE,
                )
            )
        )
        who, other = draw(st.sampled_from(INVESTORS)), draw(st.sampled_from(INVESTORS))
        payloads: dict[str, dict[str, Any]] = {
            MINT: {"investor_id": who, "quantity": 1},
            BURN: {"investor_id": who, "quantity": 1},
            FORCED_TRANSFER: {"from_investor_id": who, "to_investor_id": other, "quantity": 1},
            FREEZE_PARTIAL: {"investor_id": who, "quantity": 1},
            UNFREEZE_PARTIAL: {"investor_id": who, "quantity": 1},
            SET_ADDRESS_FROZEN: {"investor_id": who, "frozen": True},
            RECOVER: {"investor_id": who, "lost_wallet": wallet(1), "new_wallet": wallet(2)},
            PAUSE: {},
            UNPAUSE: {},
        }
        row = pending(seq, kind, payloads[kind])
        rows.append(replace(row, asset_id=None) if kind == RECOVER else row)
    return rows


def touched(rows: list[OutboxRow]) -> set[str]:
    return {v for row in rows for k, v in row.payload.items() if k.endswith("investor_id")}


# --------------------------------------------------------------------------- properties


@COMPARE_SETTINGS
@given(agreeing_sides())
def test_sides_that_agree_have_no_difference(truth: Truth) -> None:
    differences, checked = compare(truth.ledger(), truth.chain(truth.paused), [])
    assert differences == []
    held = {truth.owners[w] for w in truth.positions}
    assert checked == len(set(truth.ledger_holders) | held)


@COMPARE_SETTINGS
@given(perturbed_sides())
def test_each_perturbation_is_reported_once_with_its_kind_and_investor(sides: tuple[Truth, bool]) -> None:
    truth, chain_paused = sides
    differences, _ = compare(truth.ledger(), truth.chain(chain_paused), [])
    assert reports(differences) == truth.expected


@COMPARE_SETTINGS
@given(perturbed_sides(), in_flight())
def test_what_operations_in_flight_touch_is_never_reported(
    sides: tuple[Truth, bool], rows: list[OutboxRow]
) -> None:
    truth, chain_paused = sides
    differences, _ = compare(truth.ledger(), truth.chain(chain_paused), rows)
    kinds = {row.kind for row in rows}
    flying = touched(rows)
    expected = Counter(
        {
            (kind, investor_id, stranger): n
            for (kind, investor_id, stranger), n in truth.expected.items()
            if investor_id not in flying
            and not (kind == "pause_mismatch" and kinds & {PAUSE, UNPAUSE})
            and not (kind == "supply_mismatch" and kinds & {MINT, BURN})
        }
    )
    assert reports(differences) == expected
    assert not {d["investor_id"] for d in differences} & flying


def test_a_lost_wallet_left_frozen_by_a_recovery_is_no_difference() -> None:
    lost, new = wallet(1), wallet(2)
    ledger = LedgerSide(
        0, False, 1, {"alice": (1, 0, False)}, {lost: "alice", new: "alice"}, frozenset({new})
    )
    on_chain = {lost: WalletPosition(0, 0, True), new: WalletPosition(1, 0, False)}
    differences, _ = compare(ledger, ChainState(ASSET, 0, False, 1, on_chain), [])
    assert differences == []

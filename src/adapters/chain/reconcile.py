"""Reconciliation: the ledger against the chain for one asset, at a final block.

Both sides come from read models on one snapshot: the ledger's holdings (per
investor) and the mirrored chain logs up to the mirror's final block (per
wallet, summed per investor over every wallet the investor ever held). Each
difference is reported once, with a kind of SPEC 4.6, the investor and wallets,
and both values. Operations the ledger still owes the chain (open outbox rows,
or done in a block not yet final) are listed as in flight, and what they touch
is not reported as a difference. The run is recorded as an event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.errors import InvalidStateError
from ledger.outbox import BURN, DONE, FORCED_TRANSFER, MINT, OPEN_STATES, PAUSE, RECOVER, UNPAUSE
from ledger.store import OutboxRow
from projections.assets import CATALOGUE
from projections.chain import ChainState, InvestorPosition, by_investor, chain_state, mirror_of
from projections.holdings import holdings
from projections.investors import wallets
from projections.schema import snapshot, view_position

SUPPLY_KINDS = (MINT, BURN)
PAUSE_KINDS = (PAUSE, UNPAUSE)


@dataclass(frozen=True)
class LedgerSide:
    position: int
    paused: bool
    supply: int
    holders: dict[str, tuple[int, int, bool]]  # investor -> (quantity, frozen, address frozen)
    owners: dict[str, str]  # wallet -> investor (lost wallets included)
    active: frozenset[str]  # wallets not lost (T-REX leaves a recovered wallet's address freeze on it)


def _ledger_side(conn: Connection, asset_id: str) -> LedgerSide:
    entry = CATALOGUE.subquery()
    asset = conn.execute(select(entry.c.paused, entry.c.total_supply).where(entry.c.asset_id == asset_id))
    row = asset.first()
    if row is None:
        msg = f"asset {asset_id} not found"
        raise InvalidStateError(msg)
    rows = conn.execute(
        select(
            holdings.c.investor_id, holdings.c.quantity, holdings.c.frozen, holdings.c.address_frozen
        ).where(holdings.c.asset_id == asset_id)
    )
    holders = {r.investor_id: (int(r.quantity), int(r.frozen), bool(r.address_frozen)) for r in rows}
    owned = conn.execute(select(wallets.c.wallet, wallets.c.investor_id, wallets.c.active)).all()
    owners = {r.wallet: r.investor_id for r in owned}
    active = frozenset(r.wallet for r in owned if r.active)
    return LedgerSide(view_position(conn), bool(row.paused), int(row.total_supply), holders, owners, active)


def _in_flight(rows: Iterable[OutboxRow], asset_id: str, final_block: int) -> list[OutboxRow]:
    """Operations on the asset whose effect is not final on chain yet."""
    flying = []
    for row in rows:
        if row.asset_id not in (asset_id, None):
            continue
        if row.asset_id is None and row.targets is not None and asset_id not in row.targets:
            continue
        if row.state in OPEN_STATES or (
            row.state == DONE and row.block_number is not None and row.block_number > final_block
        ):
            flying.append(row)
    return flying


def _touched(row: OutboxRow) -> set[str]:
    p = row.payload
    if row.kind == FORCED_TRANSFER:
        return {p["from_investor_id"], p["to_investor_id"]}
    if row.kind == RECOVER:
        return {p["investor_id"]}
    return {p["investor_id"]} if "investor_id" in p else set()


def difference(
    kind: str, investor_id: str | None, wallets: list[str], ledger: Any, chain: Any
) -> dict[str, Any]:
    return {"kind": kind, "investor_id": investor_id, "wallets": wallets, "ledger": ledger, "chain": chain}


def _holder_differences(
    investor: str, ledger: tuple[int, int, bool], chain: InvestorPosition
) -> list[dict[str, Any]]:
    quantity, frozen, address_frozen = ledger
    held, found = chain.wallets, []
    if quantity != chain.balance:
        kind = "quantity_mismatch"
        if chain.balance == 0:
            kind = "missing_on_chain"
        elif quantity == 0:
            kind = "missing_in_ledger"
        found.append(difference(kind, investor, held, str(quantity), str(chain.balance)))
    if frozen != chain.frozen:
        found.append(difference("frozen_mismatch", investor, held, str(frozen), str(chain.frozen)))
    if address_frozen != chain.address_frozen:
        found.append(
            difference("address_freeze_mismatch", investor, held, address_frozen, chain.address_frozen)
        )
    return found


def compare(
    ledger: LedgerSide, chain: ChainState, flying: list[OutboxRow]
) -> tuple[list[dict[str, Any]], int]:
    """Every difference between the two sides (and how many holders were compared)."""
    skip: set[str] = set()
    for row in flying:
        skip |= _touched(row)
    differences: list[dict[str, Any]] = []
    on_chain, unknown = by_investor(chain.wallets, ledger.owners, ledger.active)
    for wallet, position in unknown.items():
        if position.balance or position.frozen or position.address_frozen:
            chain_value = {"quantity": str(position.balance), "frozen": str(position.frozen)}
            differences.append(difference("unknown_wallet", None, [wallet], None, chain_value))
    investors = sorted(set(ledger.holders) | set(on_chain))
    for investor in investors:
        if investor not in skip:
            holder = ledger.holders.get(investor, (0, 0, False))
            differences += _holder_differences(investor, holder, on_chain.get(investor, InvestorPosition([])))
    kinds = {row.kind for row in flying}
    if ledger.paused != chain.paused and not kinds & set(PAUSE_KINDS):
        differences.append(difference("pause_mismatch", None, [], ledger.paused, chain.paused))
    if ledger.supply != chain.supply and not kinds & set(SUPPLY_KINDS):
        differences.append(difference("supply_mismatch", None, [], str(ledger.supply), str(chain.supply)))
    return differences, len(investors)


def _flight_entry(row: OutboxRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "kind": row.kind,
        "state": row.state,
        "position": row.position,
        "payload": {
            k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in row.payload.items()
        },
        "tx_hash": row.tx_hash,
        "block_number": row.block_number,
    }


def reconcile(
    app: LedgerApplication, engine: Engine, asset_id: str, idempotency_key: str | None = None
) -> Outcome:
    """Compares ledger and chain for an asset as the read models show them now and records
    the run. The caller brings the mirror and the read models up to date first."""
    with snapshot(engine) as conn:
        mirror = mirror_of(conn, asset_id)
        if mirror is None:
            msg = f"asset {asset_id} is not bound to a mirrored token"
            raise InvalidStateError(msg)
        if mirror.final_block < mirror.start_block:
            msg = (
                f"no block since the token of {asset_id} was deployed (block {mirror.start_block}) "
                f"is final yet (final: {mirror.final_block}); reconcile after more confirmations"
            )
            raise InvalidStateError(msg)
        ledger = _ledger_side(conn, asset_id)
        chain = chain_state(conn, asset_id, int(mirror.final_block), bool(mirror.paused_at_start))
    flying = _in_flight(app.outbox.unsettled(asset_id, chain.block), asset_id, chain.block)
    differences, checked = compare(ledger, chain, flying)
    report = {
        "asset_id": asset_id,
        "chain_id": int(mirror.chain_id),
        "token": mirror.token,
        "final_block": chain.block,
        "ledger_position": ledger.position,
        "holders_checked": checked,
        "differences": differences,
        "in_flight": [_flight_entry(row) for row in flying],
    }
    return app.record_reconciliation(report, idempotency_key)

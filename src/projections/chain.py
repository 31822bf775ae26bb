"""The chain as the ledger saw it: mirrored token logs, outbound operation outcomes,
mirrors' progress, and reconciliation reports.

Positions on chain are answered from the mirrored logs themselves (never from a
running balance), so they can be given as of any block and a retracted log simply
stops counting.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, String, Table, Text, select

from ledger.domain.chain import ChainLog, ChainMirror, ChainOperation, Reconciliation
from projections.batch import Batch
from projections.investors import wallets as investor_wallets
from projections.schema import Exact, metadata

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# The token events that change a position or the pause state (the others are history only).
POSITION_EVENTS = ("Transfer", "TokensFrozen", "TokensUnfrozen", "AddressFrozen", "Paused", "Unpaused")

chain_logs = Table(
    "rm_chain_logs",
    metadata,
    Column("log_id", String(36), primary_key=True),
    Column("asset_id", String(32), nullable=False, index=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("address", String(42), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("from_wallet", String(42)),
    Column("to_wallet", String(42)),
    Column("amount", Exact),
    Column("flag", Boolean),
    Column("problem", Text),
    Column("retracted", Boolean, nullable=False),
    Column("position", BigInteger, nullable=False),
)

chain_operations = Table(
    "rm_chain_operations",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("asset_id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Column("tx_hash", String(66)),
    Column("block_number", BigInteger),
    Column("reason", Text),
    Column("position", BigInteger, nullable=False),
)

chain_mirrors = Table(
    "rm_chain_mirrors",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("token", String(42), nullable=False),
    Column("paused_at_start", Boolean, nullable=False),
    Column("start_block", BigInteger, nullable=False),
    Column("next_block", BigInteger, nullable=False),
    Column("final_block", BigInteger, nullable=False),
)

reconciliations = Table(
    "rm_reconciliations",
    metadata,
    Column("reconciliation_id", String(36), primary_key=True),
    Column("asset_id", String(32), nullable=False, index=True),
    Column("final_block", BigInteger, nullable=False),
    Column("ledger_position", BigInteger, nullable=False),
    Column("report", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)


def _log_row(event: ChainLog.Mirrored) -> dict[str, Any]:
    args, name = event.args, event.name
    row: dict[str, Any] = {"from_wallet": None, "to_wallet": None, "amount": None, "flag": None}
    if event.problem is None:
        if name == "Transfer":
            row.update(from_wallet=args["from"], to_wallet=args["to"], amount=args["value"])
        elif name in ("TokensFrozen", "TokensUnfrozen"):
            row.update(from_wallet=args["_userAddress"], amount=args["_amount"])
        elif name == "AddressFrozen":
            row.update(from_wallet=args["_userAddress"], flag=bool(args["_isFrozen"]))
        elif name == "RecoverySuccess":
            row.update(from_wallet=args["_lostWallet"], to_wallet=args["_newWallet"])
    return row


class ChainView:
    name = "chain"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.logs = tables["rm_chain_logs"]
        self.operations = tables["rm_chain_operations"]
        self.mirrors = tables["rm_chain_mirrors"]
        self.reconciliations = tables["rm_reconciliations"]
        self._mirror_assets: dict[UUID, str] = {}  # mirror id -> asset

    def load(self, conn: Connection) -> None:
        rows = conn.execute(select(self.mirrors.c.asset_id, self.mirrors.c.chain_id, self.mirrors.c.token))
        self._mirror_assets = {ChainMirror.create_id(r.chain_id, r.token): r.asset_id for r in rows}

    def flush(self, batch: Batch) -> None:
        """Every row is written as its event is processed."""

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: ChainLog.Mirrored, batch: Batch) -> None:
        batch.insert(
            self.logs,
            {
                "log_id": str(event.originator_id),
                "asset_id": event.asset_id,
                "chain_id": event.chain_id,
                "address": event.address,
                "block_number": event.block_number,
                "log_index": event.log_index,
                "name": event.name[:64],
                **_log_row(event),
                "problem": event.problem,
                "retracted": False,
                "position": batch.position,
            },
        )

    @process_event.register
    def _(self, event: ChainLog.Retracted, batch: Batch) -> None:
        batch.update(self.logs, {"log_id": str(event.originator_id)}, {"retracted": True})

    @process_event.register
    def _(self, event: ChainOperation.Recorded, batch: Batch) -> None:
        batch.insert(
            self.operations,
            {
                "seq": event.seq,
                "asset_id": event.asset_id,
                "kind": event.kind,
                "succeeded": event.succeeded,
                "tx_hash": event.tx_hash,
                "block_number": event.block_number,
                "reason": event.reason,
                "position": batch.position,
            },
        )

    @process_event.register
    def _(self, event: ChainMirror.Started, batch: Batch) -> None:
        self._mirror_assets[event.originator_id] = event.asset_id
        batch.insert(
            self.mirrors,
            {
                "asset_id": event.asset_id,
                "chain_id": event.chain_id,
                "token": event.token,
                "paused_at_start": event.paused,
                "start_block": event.start_block,
                "next_block": event.start_block,
                "final_block": event.start_block - 1,
            },
        )

    @process_event.register
    def _(self, event: ChainMirror.Advanced, batch: Batch) -> None:
        batch.update(
            self.mirrors,
            {"asset_id": self._asset_of(event)},
            {"next_block": event.to_block + 1, "final_block": event.final_block},
        )

    @process_event.register
    def _(self, event: ChainMirror.Reorganised, batch: Batch) -> None:
        batch.update(self.mirrors, {"asset_id": self._asset_of(event)}, {"next_block": event.fork_block})

    @process_event.register
    def _(self, event: Reconciliation.Completed, batch: Batch) -> None:
        report = {
            "reconciliation_id": str(event.originator_id),
            "asset_id": event.asset_id,
            "chain_id": event.chain_id,
            "token": event.token,
            "final_block": event.final_block,
            "ledger_position": event.ledger_position,
            "holders_checked": event.holders_checked,
            "differences": event.differences,
            "in_flight": event.in_flight,
            "position": batch.position,
        }
        batch.insert(
            self.reconciliations,
            {
                "reconciliation_id": report["reconciliation_id"],
                "asset_id": event.asset_id,
                "final_block": event.final_block,
                "ledger_position": event.ledger_position,
                "report": json.dumps(report, sort_keys=True),
                "position": batch.position,
            },
        )

    def _asset_of(self, event: Any) -> str:
        return self._mirror_assets[event.originator_id]


@dataclass
class WalletPosition:
    """A wallet's position on chain as of a block, from the mirrored logs."""

    balance: int = 0
    frozen: int = 0
    address_frozen: bool = False


@dataclass
class ChainState:
    """A token's state on chain as of a final block, as mirrored."""

    asset_id: str
    block: int
    paused: bool
    supply: int
    wallets: dict[str, WalletPosition] = field(default_factory=dict)


def chain_state(conn: Connection, asset_id: str, block: int, paused_at_start: bool) -> ChainState:
    """Every wallet's balance, frozen tokens and address freeze, the pause state and the
    supply of an asset's token, counting the logs of blocks up to `block` not retracted."""
    t = chain_logs
    rows = conn.execute(
        select(t.c.name, t.c.from_wallet, t.c.to_wallet, t.c.amount, t.c.flag)
        .where(
            t.c.asset_id == asset_id,
            t.c.block_number <= block,
            t.c.retracted.is_(False),
            t.c.problem.is_(None),
            t.c.name.in_(POSITION_EVENTS),
        )
        .order_by(t.c.block_number, t.c.log_index)
    )
    wallets: defaultdict[str, WalletPosition] = defaultdict(WalletPosition)
    paused, supply = paused_at_start, 0
    for name, source, target, amount, flag in rows:
        if name == "Transfer":
            if source == ZERO_ADDRESS:
                supply += amount
            else:
                wallets[source].balance -= amount
            if target == ZERO_ADDRESS:
                supply -= amount
            else:
                wallets[target].balance += amount
        elif name == "TokensFrozen":
            wallets[source].frozen += amount
        elif name == "TokensUnfrozen":
            wallets[source].frozen -= amount
        elif name == "AddressFrozen":
            wallets[source].address_frozen = bool(flag)
        elif name in ("Paused", "Unpaused"):
            paused = name == "Paused"
    return ChainState(asset_id, block, paused, supply, dict(wallets))


def mirror_of(conn: Connection, asset_id: str) -> Any:
    """The mirror's progress for an asset (None if its token is not mirrored yet)."""
    return conn.execute(select(chain_mirrors).where(chain_mirrors.c.asset_id == asset_id)).first()


def reconciliation(conn: Connection, reconciliation_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(reconciliations.c.report).where(reconciliations.c.reconciliation_id == reconciliation_id)
    ).first()
    return None if row is None else dict(json.loads(row.report))


def latest_reconciliation(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(reconciliations.c.report)
        .where(reconciliations.c.asset_id == asset_id)
        .order_by(reconciliations.c.position.desc())
        .limit(1)
    ).first()
    return None if row is None else dict(json.loads(row.report))


@dataclass
class InvestorPosition:
    """An investor's position on chain: every wallet it ever held, summed."""

    wallets: list[str]
    balance: int = 0
    frozen: int = 0
    address_frozen: bool = False


def by_investor(
    wallets: Mapping[str, WalletPosition], owners: Mapping[str, str], active: Collection[str] | None = None
) -> tuple[dict[str, InvestorPosition], dict[str, WalletPosition]]:
    """Wallet positions summed per investor, and those of wallets no investor holds. An
    investor counts as address-frozen if one of its `active` wallets is (default: any wallet;
    T-REX leaves a recovered wallet's freeze on it)."""
    investors: dict[str, InvestorPosition] = {}
    unknown: dict[str, WalletPosition] = {}
    for wallet, position in sorted(wallets.items()):
        owner = owners.get(wallet)
        if owner is None:
            unknown[wallet] = position
            continue
        found = investors.setdefault(owner, InvestorPosition([]))
        found.wallets.append(wallet)
        found.balance += position.balance
        found.frozen += position.frozen
        counts = active is None or wallet in active
        found.address_frozen = found.address_frozen or (counts and position.address_frozen)
    return investors, unknown


def positions_by_investor(
    conn: Connection, asset_id: str, block: int, paused_at_start: bool = True
) -> tuple[dict[str, InvestorPosition], dict[str, WalletPosition]]:
    """The chain positions of an asset's token as of `block` per investor, and those of the
    wallets no investor holds."""
    state = chain_state(conn, asset_id, block, paused_at_start)
    owned = conn.execute(select(investor_wallets.c.wallet, investor_wallets.c.investor_id)).all()
    return by_investor(state.wallets, {row.wallet: row.investor_id for row in owned})

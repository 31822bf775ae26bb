"""What the ledger knows of the chain: outcomes of outbound operations, mirrored token
events, the mirror's progress, and reconciliation runs.

These aggregates record facts observed or done elsewhere; their commands check
only that the facts are consistent with what was recorded before (e.g. the
mirror continues from where it stopped), never business rules of the register.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from ledger.domain.quantity import Count
from ledger.domain.values import stream_id
from ledger.errors import ConcurrencyError

ANCHOR_MIRROR = "audit-anchor"  # the mirror of the anchor contract of signed tree heads (no asset)


class MirrorMovedError(ConcurrencyError):
    """Another mirror process recorded the same blocks first; re-read and continue."""


class ChainOperation(Aggregate):
    """The outcome of one outbox operation on one token: done in a transaction, or failed."""

    class Recorded(Aggregate.Created):
        seq: int
        kind: str
        asset_id: str
        succeeded: bool
        tx_hash: str | None
        block_number: int | None
        block_hash: str | None
        reason: str | None

    def __init__(
        self,
        seq: int,
        kind: str,
        asset_id: str,
        succeeded: bool,
        tx_hash: str | None,
        block_number: int | None,
        block_hash: str | None,
        reason: str | None,
    ) -> None:
        self.seq = seq
        self.kind = kind
        self.asset_id = asset_id
        self.succeeded = succeeded
        self.tx_hash = tx_hash
        self.block_number = block_number
        self.block_hash = block_hash
        self.reason = reason

    @staticmethod
    def create_id(seq: int, asset_id: str) -> UUID:
        return stream_id("chain-operation", f"{seq}:{asset_id}")

    @classmethod
    def record(cls, **outcome: Any) -> ChainOperation:
        return cls._create(cls.Recorded, id=cls.create_id(outcome["seq"], outcome["asset_id"]), **outcome)


class ChainLog(Aggregate):
    """One log of a bound contract as the mirror read it, keyed by (chain, block hash, log index).

    A log whose block was orphaned by a reorganisation is retracted, never deleted.
    A log the mirror could not decode is recorded with its `problem`, so nothing
    read from the chain is silently dropped.
    """

    class Mirrored(Aggregate.Created):
        chain_id: Count
        asset_id: str
        address: str
        block_number: int
        block_hash: str
        log_index: int
        tx_hash: str
        name: str
        args: dict[str, Any]
        problem: str | None

    def __init__(
        self,
        chain_id: int,
        asset_id: str,
        address: str,
        block_number: int,
        block_hash: str,
        log_index: int,
        tx_hash: str,
        name: str,
        args: dict[str, Any],
        problem: str | None,
    ) -> None:
        self.chain_id = chain_id
        self.asset_id = asset_id
        self.address = address
        self.block_number = block_number
        self.block_hash = block_hash
        self.log_index = log_index
        self.tx_hash = tx_hash
        self.name = name
        self.args = args
        self.problem = problem
        self.retracted = False

    @staticmethod
    def create_id(chain_id: int, block_hash: str, log_index: int) -> UUID:
        return stream_id("chain-log", f"{chain_id}:{block_hash.lower()}:{log_index}")

    @classmethod
    def mirrored(cls, **log: Any) -> ChainLog.Mirrored:
        """The creation event of a mirrored log, made without building the aggregate."""
        log.setdefault("problem", None)
        return cls.Mirrored(
            originator_topic=_chain_log_topic(),
            originator_id=cls.create_id(log["chain_id"], log["block_hash"], log["log_index"]),
            originator_version=cls.INITIAL_VERSION,
            timestamp=cls.Mirrored.create_timestamp(),
            **log,
        )

    @classmethod
    def mirrored_state(cls, timestamp: datetime, log: dict[str, Any]) -> tuple[UUID, dict[str, Any]]:
        """What `mirrored` records, as (stream id, event state), without building the event:
        the mirror records thousands at a time and only the read model looks at them again.
        `log` must carry exactly the fields of `Mirrored` (`problem` may be left out)."""
        state = {"timestamp": timestamp, "originator_topic": _chain_log_topic(), **log}
        state.setdefault("problem", None)
        if state.keys() != _mirrored_fields():
            expected = sorted(_mirrored_fields())
            raise ValueError(f"a mirrored log has the fields {expected}, not {sorted(state)}")
        return cls.create_id(log["chain_id"], log["block_hash"], log["log_index"]), state

    def retract(self, reason: str) -> None:
        if not self.retracted:
            self.trigger_event(self.Retracted, reason=reason)

    class Retracted(Aggregate.Event):
        reason: str

        def apply(self, log: ChainLog) -> None:
            log.retracted = True


@cache
def _chain_log_topic() -> str:
    return get_topic(ChainLog)


@cache
def _mirrored_fields() -> frozenset[str]:
    """The state of a `ChainLog.Mirrored` as stored: its fields but the stream id and version."""
    names = {f.name for f in dataclasses.fields(ChainLog.Mirrored)}
    return frozenset(names - {"originator_id", "originator_version"})


class ChainMirror(Aggregate):
    """The mirror of one bound token: how far it has read, and the recent blocks it saw.

    `window` keeps (number, hash, parent hash) of the blocks not yet final that
    held mirrored logs, and of the last block read: comparing them with the
    chain later reveals a reorganisation.
    """

    class Started(Aggregate.Created):
        chain_id: Count
        asset_id: str
        token: str
        identity_registry: str
        start_block: int
        paused: bool
        contracts: dict[str, Any]

    def __init__(
        self,
        chain_id: int,
        asset_id: str,
        token: str,
        identity_registry: str,
        start_block: int,
        paused: bool,
        contracts: dict[str, Any],
    ) -> None:
        self.chain_id = chain_id
        self.asset_id = asset_id
        self.token = token
        self.identity_registry = identity_registry
        self.contracts = contracts  # the token's suite: registries, compliance, identity factory
        self.start_block = start_block
        self.paused_at_start = paused
        self.next_block = start_block
        self.final_block = start_block - 1
        self.window: list[list[Any]] = []
        self.logs: dict[int, list[str]] = {}  # block number -> ids of the logs mirrored from it

    @staticmethod
    def create_id(chain_id: int, token: str) -> UUID:
        return stream_id("chain-mirror", f"{chain_id}:{token.lower()}")

    @classmethod
    def start(cls, **binding: Any) -> ChainMirror:
        return cls._create(cls.Started, id=cls.create_id(binding["chain_id"], binding["token"]), **binding)

    def check_continues(self, from_block: int) -> None:
        if from_block != self.next_block:
            raise MirrorMovedError(
                f"mirror of {self.asset_id} is at block {self.next_block}, not {from_block}"
            )

    def advance(
        self, to_block: int, final_block: int, window: list[list[Any]], logs: dict[int, list[str]]
    ) -> None:
        """Records that blocks up to `to_block` were read and which logs they held."""
        self.trigger_event(
            self.Advanced,
            to_block=to_block,
            final_block=max(final_block, self.final_block),
            window=window,
            logs={str(number): ids for number, ids in logs.items()},
        )

    class Advanced(Aggregate.Event):
        to_block: int
        final_block: int
        window: list[list[Any]]
        logs: dict[str, list[str]]

        def apply(self, mirror: ChainMirror) -> None:
            mirror.next_block = self.to_block + 1
            mirror.final_block = self.final_block
            mirror.window = self.window
            for key, ids in self.logs.items():
                mirror.logs.setdefault(int(key), []).extend(ids)
            for number in [n for n in mirror.logs if n <= self.final_block]:
                del mirror.logs[number]

    def reorganise(self, fork_block: int, orphaned: list[list[Any]]) -> None:
        """Records that blocks from `fork_block` on were replaced; reading resumes there."""
        self.trigger_event(self.Reorganised, fork_block=fork_block, orphaned=orphaned)

    class Reorganised(Aggregate.Event):
        fork_block: int
        orphaned: list[list[Any]]

        def apply(self, mirror: ChainMirror) -> None:
            mirror.next_block = self.fork_block
            mirror.window = [b for b in mirror.window if b[0] < self.fork_block]
            for number in [n for n in mirror.logs if n >= self.fork_block]:
                del mirror.logs[number]


class Reconciliation(Aggregate):
    """One comparison of the ledger with the chain for an asset, at a final block."""

    class Completed(Aggregate.Created):
        asset_id: str
        chain_id: Count
        token: str
        final_block: int
        ledger_position: int
        holders_checked: int
        differences: list[dict[str, Any]]
        in_flight: list[dict[str, Any]]

    def __init__(
        self,
        asset_id: str,
        chain_id: int,
        token: str,
        final_block: int,
        ledger_position: int,
        holders_checked: int,
        differences: list[dict[str, Any]],
        in_flight: list[dict[str, Any]],
    ) -> None:
        self.asset_id = asset_id
        self.chain_id = chain_id
        self.token = token
        self.final_block = final_block
        self.ledger_position = ledger_position
        self.holders_checked = holders_checked
        self.differences = differences
        self.in_flight = in_flight

    @classmethod
    def complete(cls, **report: Any) -> Reconciliation:
        return cls._create(cls.Completed, id=uuid4(), **report)

"""Mirrors the logs of a bound token's contracts into the ledger's event stream.

Each cycle reads from where the mirror's checkpoint stopped up to the chain head,
in block ranges that grow while they stay small and shrink when the node refuses
or a range holds too many logs. Each range's logs and the new checkpoint are one
ledger transaction, so a restart (or an RPC failure mid-way) resumes exactly
after the last recorded range: nothing is missed, nothing is recorded twice
(each log is also keyed by chain id, block hash and log index).

Reorganisations: the checkpoint keeps the hashes of the recent, not yet final
blocks it read logs from and of the last block read. Every cycle compares them
with the chain (and the parent hash of the next block with the last one read);
when they differ, the logs of the orphaned blocks are retracted by new events and
reading resumes after the last block that still matches. Only blocks
`confirmations` deep count as final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.chain import anchor
from adapters.chain.events import LogDecoder, UnknownLogError
from adapters.chain.rpc import Rpc, RpcError, RpcUnavailableError
from ledger.application import LedgerApplication
from ledger.domain.chain import ChainMirror
from ledger.errors import AlreadyExistsError, ValidationError
from ledger.pauses import gc_paused

PAUSED_SELECTOR = "0x5c975abb"  # paused()
FIRST_SPAN, MAX_SPAN = 1_000, 50_000  # blocks per eth_getLogs request
MAX_LOGS = 20_000  # logs per ledger transaction
logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What one mirror cycle did."""

    asset_id: str
    head: int
    final_block: int
    next_block: int
    logs: int = 0
    unrecognised: int = 0
    retracted: int = 0
    reorganisations: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) else int(str(value), 16)


def _first_blocks(logs: list[dict[str, Any]], limit: int) -> tuple[int, list[dict[str, Any]]]:
    """The logs of the first whole blocks that hold at most `limit` logs (at least one block),
    and the last of those blocks; logs come ordered by block and index."""
    first = _int(logs[0]["blockNumber"])
    cut = _int(logs[limit]["blockNumber"])  # the block the limit falls in is left for later...
    end = cut - 1 if cut > first else first  # ...unless it is the first block: then all of it
    return end, [log for log in logs if _int(log["blockNumber"]) <= end]


class _RangeReader:
    """The logs of a token from a block to the head, range after range.

    Spans grow while ranges stay small and shrink when the node refuses one; a range
    holding more logs than one ledger transaction takes is cut at a block boundary and
    the rest comes next without being read again. The next range may be read in the
    background while the caller records the current one (never two requests at once).
    """

    def __init__(
        self, rpc: Rpc, pool: ThreadPoolExecutor, addresses: list[str], head: int, span: int
    ) -> None:
        self.rpc, self.pool, self.addresses, self.head, self.span = rpc, pool, addresses, head, span
        self._unread: tuple[int, list[dict[str, Any]]] | None = None  # the rest of a cut range
        self._ahead: Future[tuple[int, list[dict[str, Any]]]] | None = None
        self._following = 0

    def _read(self, start: int, end: int) -> tuple[int, list[dict[str, Any]]]:
        return end, [log for log in self.rpc.logs(self.addresses, start, end) if not log.get("removed")]

    def ranges(self, start: int) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
        while start <= self.head:
            ahead, self._ahead = self._ahead, None
            try:
                if self._unread is not None:
                    end, raw = self._unread
                elif ahead is not None:
                    end, raw = ahead.result()
                else:
                    end, raw = self._read(start, min(self.head, start + self.span - 1))
            except RpcUnavailableError:
                raise
            except RpcError:
                if self.span == 1:
                    raise
                self.span = max(1, self.span // 2)  # the node refused the range (too many, too slow)
                continue
            self._unread = None
            if len(raw) > MAX_LOGS:
                cut, kept = _first_blocks(raw, MAX_LOGS)
                self._unread = (end, raw[len(kept) :]) if cut < end else None
                end, raw = cut, kept
            elif len(raw) < MAX_LOGS // 4:
                self.span = min(MAX_SPAN, self.span * 2)
            self._following = end + 1
            yield start, end, raw
            start = end + 1

    def read_ahead(self) -> None:
        start = self._following
        if self._unread is None and self._ahead is None and start <= self.head:
            end = min(self.head, start + self.span - 1)
            self._ahead = self.pool.submit(self._read, start, end)

    def close(self) -> None:
        """Waits for a read still in flight (its result is not needed any more)."""
        if self._ahead is not None:
            with suppress(RpcError):
                self._ahead.result()
            self._ahead = None


class Mirror:
    def __init__(self, app: LedgerApplication, rpc: Rpc, confirmations: int) -> None:
        self.app = app
        self.rpc = rpc
        self.confirmations = confirmations
        self._spans: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirror-read")

    def attach(self, asset_id: str, start_block: int = 0, contracts: dict[str, Any] | None = None) -> bool:
        """Starts mirroring an asset's bound token from `start_block` (False if it already is),
        reading the token's pause state first (`init` pauses without an event)."""
        paused = self._paused_before(self._binding(asset_id)["token_address"], start_block)
        try:
            self.app.start_mirror(asset_id, start_block, paused, contracts)
        except AlreadyExistsError:
            return False
        return True

    def _paused_before(self, token: str, block: int) -> bool:
        """The token's pause state before `block`; a token not deployed yet will start paused
        (T-REX `init` pauses without an event, so its first `Unpaused` is what counts)."""
        if block == 0:
            return True
        answer = self.rpc.call("eth_call", [{"to": token, "data": PAUSED_SELECTOR}, hex(block - 1)])
        return True if answer in (None, "0x") else int(answer, 16) == 1

    def _binding(self, asset_id: str) -> dict[str, Any]:
        asset = self.app.get_asset(asset_id)
        if asset.token is None:
            msg = f"asset {asset_id} is not bound to a token"
            raise LookupError(msg)
        return dict(asset.token)

    def mirror_of(self, asset_id: str) -> ChainMirror:
        token = self._binding(asset_id)
        return self.app.get_mirror(token["chain_id"], token["token_address"])

    def sync(self, asset_id: str, progress: Callable[[int, int], None] | None = None) -> SyncReport:
        """Reads the asset's token up to the chain head (one cycle); raises `RpcUnavailableError`
        when the node cannot be reached, with everything before the failure kept. `progress`
        hears (blocks read so far, blocks to read) after each recorded range."""
        mirror = self.mirror_of(asset_id)
        decoder = LogDecoder({mirror.token: "token", mirror.identity_registry: "identity_registry"})
        addresses = sorted({mirror.token, mirror.identity_registry})
        return self._sync(mirror, decoder, addresses, asset_id, progress)

    def attach_anchor(self, chain_id: int, address: str, start_block: int) -> bool:
        """Starts mirroring the anchor contract of signed tree heads (False if it already is)."""
        try:
            self.app.start_anchor_mirror(chain_id, address, start_block)
        except AlreadyExistsError:
            return False
        return True

    def sync_anchor(
        self, chain_id: int, address: str, progress: Callable[[int, int], None] | None = None
    ) -> SyncReport:
        """Reads the anchor contract's logs up to the chain head, each recorded as an
        `Anchored` chain log (or with its problem), reorganisations handled as for a token."""
        mirror = self.app.get_mirror(chain_id, address)
        return self._sync(mirror, AnchorDecoder(address), [mirror.token], mirror.asset_id, progress)

    def _sync(
        self,
        mirror: ChainMirror,
        decoder: Decoder,
        addresses: list[str],
        key: str,
        progress: Callable[[int, int], None] | None,
    ) -> SyncReport:
        head = self.rpc.block_number()
        report = SyncReport(mirror.asset_id, head, mirror.final_block, mirror.next_block)
        mirror = self._check_reorganisation(mirror, report)
        final = max(head - self.confirmations, mirror.final_block)
        reader = _RangeReader(self.rpc, self._pool, addresses, head, self._spans.get(key, FIRST_SPAN))
        try:
            for start, end, raw in reader.ranges(mirror.next_block):
                tip = self.rpc.blocks([end])[end]
                if tip is None or any(
                    _int(log["blockNumber"]) == end and log["blockHash"] != tip["hash"] for log in raw
                ):
                    break  # the chain changed under us: the next cycle sees the reorganisation
                reader.read_ahead()  # the next range is read while this one is recorded
                with gc_paused():
                    logs = [self._entry(mirror, decoder, log, report) for log in raw]
                seen = [(w[0], w[1]) for w in mirror.window if w[0] > final]
                seen += sorted(
                    {(e["block_number"], e["block_hash"]) for e in logs if e["block_number"] > final}
                )
                window: list[list[Any]] = [list(w) for w in dict.fromkeys(seen)]
                window.append([end, tip["hash"], tip["parentHash"]])
                self.app.mirror_blocks(mirror.id, start, end, min(final, end), window, logs)
                report.logs += len(logs)
                mirror = self._reload(mirror)
                if progress is not None:
                    progress(end + 1 - report.next_block, head + 1 - report.next_block)
        finally:
            reader.close()
        self._spans[key] = reader.span
        report.final_block, report.next_block = mirror.final_block, mirror.next_block
        return report

    def _entry(
        self, mirror: ChainMirror, decoder: Decoder, log: dict[str, Any], report: SyncReport
    ) -> dict[str, Any]:
        """A log as the ledger records it; one that does not decode is kept with its reason."""
        try:
            name, args, address = decoder.event(log)  # arguments come as JSON values: ints, 0x strings, lists
        except UnknownLogError as error:
            report.unrecognised += 1
            topics = list(log.get("topics") or [])
            return {
                "chain_id": mirror.chain_id,
                "asset_id": mirror.asset_id,
                "block_number": _int(log["blockNumber"]),
                "block_hash": log["blockHash"],
                "log_index": _int(log["logIndex"]),
                "tx_hash": log["transactionHash"],
                "address": str(log["address"]),
                "name": topics[0] if topics else "anonymous",
                "args": {"topics": topics, "data": log.get("data", "0x")},
                "problem": str(error),
            }
        return {
            "chain_id": mirror.chain_id,
            "asset_id": mirror.asset_id,
            "block_number": _int(log["blockNumber"]),
            "block_hash": log["blockHash"],
            "log_index": _int(log["logIndex"]),
            "tx_hash": log["transactionHash"],
            "address": address,
            "name": name,
            "args": args,
            "problem": None,
        }

    def _check_reorganisation(self, mirror: ChainMirror, report: SyncReport) -> ChainMirror:
        """Compares the recent blocks the mirror read with the chain; retracts what was orphaned."""
        if not mirror.window:
            return mirror
        numbers = sorted({w[0] for w in mirror.window} | {mirror.next_block})
        canonical = self.rpc.blocks(numbers)
        changed = [w for w in mirror.window if (canonical[w[0]] or {}).get("hash") != w[1]]
        following = canonical[mirror.next_block]
        last = mirror.window[-1]
        if (
            not changed
            and following is not None
            and last[0] == mirror.next_block - 1
            and following["parentHash"] != last[1]
        ):
            changed = [last]  # the next block does not descend from the last one read
        if not changed:
            return mirror
        first_changed = min(w[0] for w in changed)
        kept = [w[0] for w in mirror.window if w[0] < first_changed]
        fork = max(kept) + 1 if kept else mirror.final_block + 1
        orphaned = [[w[0], w[1]] for w in mirror.window if w[0] >= fork]
        outcome = self.app.retract_blocks(mirror.id, fork, orphaned)
        report.retracted += int(outcome.result["retracted"])
        report.reorganisations += 1
        logger.warning(
            "%s: reorganisation from block %s, %s logs retracted",
            mirror.asset_id,
            fork,
            outcome.result["retracted"],
        )
        return self._reload(mirror)

    def _reload(self, mirror: ChainMirror) -> ChainMirror:
        return self.app.get_mirror(mirror.chain_id, mirror.token)


class Decoder(Protocol):
    def event(self, log: dict[str, Any]) -> tuple[str, dict[str, Any], str]: ...


class AnchorDecoder:
    """The anchor contract's logs as `Anchored` (tree size, root, timestamp, key id, signature);
    its signature is not checked here (`verify --anchored` does, with the public key)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def event(self, log: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        if str(log["address"]).lower() != self.address.lower():
            raise UnknownLogError(f"log from unbound address {log['address']}")
        try:
            head = anchor.decode(log).head
        except ValidationError as error:
            raise UnknownLogError(f"not an anchored tree head: {error.detail}") from None
        return "Anchored", head.as_dict(), self.address

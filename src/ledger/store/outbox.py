"""The chain outbox's rows (`ledger.outbox` says what they mean): written by the recorders
with the events that owe them, then read and advanced by the worker sending to the chain."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.outbox import DONE, OPEN_STATES
from ledger.store.audit import StoreAdmin
from ledger.store.schema import OUTBOX_COLUMNS

OUTBOX_LOCK = 0x4F555442  # advisory lock key held by the worker sending to the chain ("OUTB")


@dataclass(frozen=True)
class OutboxRow:
    """One operation owed to the chain and how far its execution has got."""

    seq: int
    position: int
    asset_id: str | None
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    nonce: int | None
    tx_hash: str | None
    raw_tx: str | None
    error: str | None
    block_number: int | None
    targets: list[str] | None
    done_targets: list[str]


def _outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        seq=int(row["seq"]),
        position=int(row["position"]),
        asset_id=row["asset_id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        state=row["state"],
        attempts=int(row["attempts"]),
        nonce=None if row["nonce"] is None else int(row["nonce"]),
        tx_hash=row["tx_hash"],
        raw_tx=row["raw_tx"],
        error=row["error"],
        block_number=None if row["block_number"] is None else int(row["block_number"]),
        targets=None if row["targets"] is None else json.loads(row["targets"]),
        done_targets=json.loads(row["done_targets"]) if row["done_targets"] else [],
    )


OUTBOX_FIELDS = frozenset(
    {"state", "attempts", "nonce", "tx_hash", "raw_tx", "error", "block_number", "targets", "done_targets"}
)


class OutboxStore:
    """The chain outbox's rows: written with the events, then advanced by the worker.

    Unlike the history, an outbox row changes as its operation progresses
    (pending -> signed -> done | failed); the outcome itself is recorded as events.
    """

    def __init__(self, admin: StoreAdmin) -> None:
        self.sql, self.table = admin.sql, admin.outbox
        self._local = threading.Lock()

    def _select(self, where: str, params: Sequence[Any], limit: int | None = None) -> list[OutboxRow]:
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.sql.fetch(
            f"SELECT seq, {OUTBOX_COLUMNS} FROM {self.table} WHERE {where} ORDER BY seq{tail}", params
        )
        return [_outbox_row(row) for row in rows]

    def open_rows(self, limit: int = 100) -> list[OutboxRow]:
        """Operations not yet carried out, oldest first: the order they must reach the chain in."""
        return self._select("state IN (%s, %s)", OPEN_STATES, limit)

    def get(self, seq: int) -> OutboxRow | None:
        rows = self._select("seq = %s", (seq,))
        return rows[0] if rows else None

    def unsettled(self, asset_id: str, final_block: int) -> list[OutboxRow]:
        """Operations on an asset (or on every asset) still open, or done after `final_block`."""
        return self._select(
            "(asset_id = %s OR asset_id IS NULL) AND (state IN (%s, %s) OR "
            "(state = %s AND block_number > %s))",
            (asset_id, *OPEN_STATES, DONE, final_block),
        )

    def all_rows(self) -> list[OutboxRow]:
        return self._select("1 = 1", ())

    def update(self, seq: int, **fields: Any) -> None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            msg = f"not outbox fields: {sorted(unknown)}"
            raise ValueError(msg)
        values = [json.dumps(v) if k in ("targets", "done_targets") else v for k, v in fields.items()]
        assignments = ", ".join(f"{name} = %s" for name in fields)
        self.sql.execute(
            f"UPDATE {self.table} SET {assignments}, updated_at = %s WHERE seq = %s",
            [*values, datetime.now(tz=UTC).isoformat(), seq],
        )

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Held by the one worker that may send to the chain now; yields False if another holds it."""
        if not self._local.acquire(blocking=False):
            yield False
            return
        try:
            with self.sql.advisory_lock(OUTBOX_LOCK) as held:
                yield held
        finally:
            self._local.release()

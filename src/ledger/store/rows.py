"""What an append writes besides its events, in the same transaction: the first outcome of
each command sent with an idempotency key, and the operations owed to the chain."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.outbox import PENDING, OutboxEntry


@dataclass(frozen=True)
class IdempotencyRecord:
    """The first outcome of a command sent with an idempotency key."""

    key: str
    request_hash: str
    response: str
    last_event_index: int


def idempotency_rows(
    records: Iterable[IdempotencyRecord], positions: Sequence[int]
) -> list[tuple[str, str, str, int]]:
    return [(r.key, r.request_hash, r.response, positions[r.last_event_index]) for r in records]


def outbox_rows(entries: Iterable[OutboxEntry], positions: Sequence[int]) -> list[tuple[Any, ...]]:
    return [(positions[e.event_index], e.asset_id, e.kind, outbox_payload(e), PENDING) for e in entries]


def outbox_payload(entry: OutboxEntry) -> str:
    return json.dumps(entry.payload, sort_keys=True)

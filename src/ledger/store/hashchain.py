"""The hash chain, defined once: what a hash covers and how each link follows the last.

`hash_n = sha256(hash_{n-1} || canonical record n)`, from 32 zero bytes. The recorders
link each batch they append with `hash_rows`; `ledger.store.audit` recomputes the
chain with `chain_hash` to verify it. The PostgreSQL recorder's server-side function
`ledger_append` computes the same links for small batches (`schema.APPEND_FUNCTION`);
`tests/integration/test_append_function_parity.py` holds it to these definitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import StoredEvent

GENESIS = bytes(32)


@dataclass(frozen=True)
class StoredRecord:
    """One row of the history as it is stored: the event and its link in the hash chain."""

    position: int
    stream_id: UUID
    version: int
    topic: str
    state: bytes
    prev_position: int | None
    hash: bytes | None


def canonical_record(position: int, stream_id: UUID | str, version: int, topic: str, state: bytes) -> bytes:
    """The bytes a hash covers: every stored field of the event, unambiguously delimited."""
    stream = stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
    return f"{position}\n{stream}\n{version}\n{topic}\n".encode() + state


def chain_hash(prev_hash: bytes, record: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record).digest()


def link(
    prev_hash: bytes, position: int, stream_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    """The hash of the event at `position`, following the link `prev_hash`."""
    return chain_hash(prev_hash, canonical_record(position, stream_id, version, topic, state))


def hash_rows(
    stored_events: Sequence[StoredEvent], positions: Sequence[int], prev_position: int, prev_hash: bytes
) -> list[tuple[int, int, bytes]]:
    """The `(position, prev_position, hash)` rows linking a batch to the chain's last link."""
    rows = []
    for event, position in zip(stored_events, positions, strict=True):
        prev_hash = link(
            prev_hash, position, event.originator_id, event.originator_version, event.topic, event.state
        )
        rows.append((position, prev_position, prev_hash))
        prev_position = position
    return rows

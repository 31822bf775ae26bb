"""The store read by auditors: verify the hash chain, export it as JSON Lines, import such
a file into an empty store, and answer "which version of this aggregate was current at
global position p". The chain is recomputed with `hashchain`, as the recorders wrote it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import IO, Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

from ledger.errors import IntegrityViolationError, ValidationError
from ledger.store.dialect import PostgresSql, Sql, SQLiteSql
from ledger.store.hashchain import GENESIS, StoredRecord, link
from ledger.store.postgres import LedgerPostgresRecorder, WriterTurn
from ledger.store.schema import HASHES_TABLE, IDEMPOTENCY_TABLE, OUTBOX_TABLE
from ledger.store.sqlite import LedgerSQLiteRecorder

BATCH = 5000  # rows read, and loaded, at a time


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the hash chain, as `ledger verify` and the API report it."""

    ok: bool
    events_checked: int
    head_position: int
    head_hash: str | None
    first_invalid_position: int | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StoreAdmin:
    """Auditor-facing reads of the store: head, verification, export, import, versions at a position."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        if isinstance(recorder, LedgerPostgresRecorder):
            self.sql: Sql = PostgresSql(recorder)
            schema = recorder.datastore.schema
            self.events, self.hashes = (
                f'"{schema}".{recorder.events_table_name}',
                f'"{schema}".{HASHES_TABLE}',
            )
            self.idempotency = f'"{schema}".{IDEMPOTENCY_TABLE}'
            self.outbox = f'"{schema}".{OUTBOX_TABLE}'
            self.position = "notification_id"
        elif isinstance(recorder, LedgerSQLiteRecorder):
            self.sql = SQLiteSql(recorder)
            self.events, self.hashes = recorder.events_table_name, HASHES_TABLE
            self.idempotency = IDEMPOTENCY_TABLE
            self.outbox = OUTBOX_TABLE
            self.position = "rowid"
        else:
            msg = f"unsupported recorder {type(recorder).__name__}"
            raise TypeError(msg)

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.sql, PostgresSql)

    def table(self, name: str) -> str:
        """A table of the store's database by its name, qualified by the store's schema."""
        if isinstance(self.sql, PostgresSql):
            return f'"{self.sql.datastore.schema}".{name}'
        return name

    def writer_turn(
        self, after: int | None, *, optimistic: bool = False
    ) -> AbstractContextManager[WriterTurn | None]:
        """The recorder's writer turn on PostgreSQL (optimistic: claimed by its append,
        `ClaimRefusedError` if another writer appended after `after`); None on SQLite, whose own
        writer lock serialises appends (a process there finds others' appends by the head
        position)."""
        if isinstance(self.sql, PostgresSql):
            return self.sql.recorder.writer_turn(after, optimistic=optimistic)
        return nullcontext(None)

    def head_position(self) -> int:
        rows = self.sql.fetch(f"SELECT MAX({self.position}) AS head FROM {self.events}", ())
        return int(rows[0]["head"] or 0)

    def version_at(self, stream_id: UUID, position: int) -> int | None:
        """The version of a stream current at a global position (None if it did not exist yet)."""
        rows = self.sql.fetch(
            f"SELECT MAX(originator_version) AS v FROM {self.events} "
            f"WHERE originator_id = %s AND {self.position} <= %s",
            (stream_id, position),
        )
        value = rows[0]["v"]
        return None if value is None else int(value)

    def idempotency_records(self, keys: Sequence[str]) -> dict[str, tuple[str, str, int]]:
        """The stored first outcomes of these idempotency keys: request hash, response, position."""
        if not keys:
            return {}
        marks = ", ".join(["%s"] * len(keys))
        rows = self.sql.fetch(
            f"SELECT key, request_hash, response, position FROM {self.idempotency} WHERE key IN ({marks})",
            list(keys),
        )
        return {row["key"]: (row["request_hash"], row["response"], int(row["position"])) for row in rows}

    def records(self, after: int = 0, stop: int | None = None) -> Iterator[StoredRecord]:
        """Every stored event with its hash link, in position order; orphan hashes appear too."""
        while True:
            rows = self.sql.fetch(
                f"SELECT e.{self.position} AS position, e.originator_id, e.originator_version, e.topic, "
                f"e.state, h.prev_position, h.hash FROM {self.events} e LEFT JOIN {self.hashes} h "
                f"ON h.position = e.{self.position} WHERE e.{self.position} > %s "
                f"ORDER BY e.{self.position} LIMIT {BATCH}",
                (after,),
            )
            orphans = self.sql.fetch(
                f"SELECT h.position, h.prev_position, h.hash FROM {self.hashes} h WHERE h.position > %s "
                f"AND h.position <= %s AND NOT EXISTS (SELECT 1 FROM {self.events} e "
                f"WHERE e.{self.position} = h.position) ORDER BY h.position",
                (after, rows[-1]["position"] if len(rows) == BATCH else 2**62),
            )
            merged = [_record(row) for row in rows] + [_orphan(row) for row in orphans]
            merged.sort(key=lambda r: r.position)
            for record in merged:
                if stop is not None and record.position > stop:
                    return
                yield record
            if len(rows) < BATCH:
                return
            after = rows[-1]["position"]

    def verify(self) -> Verification:
        from ledger.selfcheck import missing_tables  # it reads this package's recorders

        missing = missing_tables(self.sql.recorder)
        if missing:  # never "ok, 0 events" for a history that is not there
            reason = f"history tables missing, dropped outside the ledger: {', '.join(missing)}"
            return Verification(False, 0, 0, None, 1, reason)
        return verify_records(self.records())

    def export(self, out: IO[str]) -> Verification:
        """Writes the history as JSON Lines (one stored event per line) and verifies it on the way."""

        def written() -> Iterator[StoredRecord]:
            for record in self.records():
                out.write(json.dumps(record_to_json(record), separators=(",", ":")) + "\n")
                yield record

        return verify_records(written())

    def import_(self, lines: Iterable[str], reread: Iterable[str]) -> Verification:
        """Loads an export into an empty store; refuses a file whose chain does not verify.

        The file is read twice: once to verify the whole chain before anything is
        written, then to load it in one transaction.
        """
        if self.head_position() or self.sql.fetch(f"SELECT 1 FROM {self.hashes} LIMIT 1", ()):
            raise ValidationError("the store is not empty; import needs an empty store")
        result = verify_records(parse_lines(lines))
        if not result.ok:
            raise IntegrityViolationError(
                f"import refused: {result.reason} at position {result.first_invalid_position}"
            )
        self.sql.bulk_load(_batched(parse_lines(reread)))
        return result


def _record(row: Any) -> StoredRecord:
    return StoredRecord(
        position=int(row["position"]),
        stream_id=UUID(str(row["originator_id"])),
        version=int(row["originator_version"]),
        topic=row["topic"],
        state=bytes(row["state"]),
        prev_position=None if row["prev_position"] is None else int(row["prev_position"]),
        hash=None if row["hash"] is None else bytes(row["hash"]),
    )


def _orphan(row: Any) -> StoredRecord:
    return StoredRecord(
        int(row["position"]), UUID(int=0), 0, "", b"", int(row["prev_position"]), bytes(row["hash"])
    )


def record_to_json(record: StoredRecord) -> dict[str, Any]:
    return {
        "position": record.position,
        "stream_id": str(record.stream_id),
        "version": record.version,
        "topic": record.topic,
        "state": record.state.decode(),
        "prev_position": record.prev_position,
        "hash": record.hash.hex() if record.hash is not None else None,
    }


def parse_lines(lines: Iterable[str]) -> Iterator[StoredRecord]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            yield StoredRecord(
                position=int(data["position"]),
                stream_id=UUID(data["stream_id"]),
                version=int(data["version"]),
                topic=str(data["topic"]),
                state=str(data["state"]).encode(),
                prev_position=None if data["prev_position"] is None else int(data["prev_position"]),
                hash=None if data["hash"] is None else bytes.fromhex(data["hash"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationError(f"line {number} is not a ledger export record: {error}") from None


def verify_records(records: Iterable[StoredRecord]) -> Verification:
    """Recomputes the chain and names the first altered, removed or inserted position."""
    prev_position, prev_hash, checked = 0, GENESIS, 0

    def fail(position: int, reason: str) -> Verification:
        return Verification(False, checked, prev_position, prev_hash.hex(), position, reason)

    for record in records:
        if record.hash is None or record.prev_position is None:
            return fail(record.position, "event without a hash: inserted outside the ledger")
        if not record.topic:
            return fail(record.position, "hash without its event: event removed")
        if record.prev_position != prev_position:
            if record.prev_position > prev_position:
                return fail(record.prev_position, "event removed before this position")
            return fail(record.position, "chain link does not follow the previous event: inserted")
        expected = link(
            prev_hash, record.position, record.stream_id, record.version, record.topic, record.state
        )
        if expected != record.hash:
            return fail(record.position, "event altered: hash does not match")
        prev_position, prev_hash = record.position, expected
        checked += 1
    return Verification(True, checked, prev_position, prev_hash.hex() if checked else None, None, None)


def _batched(records: Iterator[StoredRecord]) -> Iterator[list[StoredRecord]]:
    batch: list[StoredRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch

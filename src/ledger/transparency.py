"""Verifiable history: the Merkle tree over the log, signed tree heads, proofs (SPEC 4.7).

The per-event hash chain (`ledger.store`) lets anyone holding the database check it; it
cannot show that the database itself was not truncated or rewritten wholesale. A signed
tree head (STH) can: whoever holds one (an auditor, the chain, a regulator) holds the
log's root at a size, signed with a key that is never in the database, and any later
store must contain that very tree.

Layout (all in the store's database, beside the history, none of it in the hash chain):
- `ledger_merkle_leaves (idx, position, hash)`: leaf `idx` is the event at `position`;
- `ledger_merkle_nodes (level, idx, hash)`: every perfect subtree of level >= 1;
- `ledger_tree_heads (tree_size, root, timestamp, key_id, signature)`: signed heads.
The tree is extended incrementally from the events after its last leaf (by the worker's
periodic signing, `ledger audit sign`, and any proof asked for beyond it), never rebuilt.

Byte layouts (what `ledger audit check` and an auditor's own code verify):
- leaf hash: `SHA-256(0x00 || canonical record)`; canonical record: the event's position,
  stream id (UUID, lower-case, hyphenated), version and topic, each followed by a newline
  (0x0a), then the stored state bytes (UTF-8 JSON);
- node hash: `SHA-256(0x01 || left || right)` (RFC 9162 2.1.1);
- signed message: `"ledger-sth-v1\\n" + tree_size + "\\n" + root (64 lower-case hex) + "\\n" +
  timestamp (RFC 3339 UTC) + "\\n"`, UTF-8, signed with Ed25519 (RFC 8032);
- key id: the first 16 hex digits of SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg.rows import tuple_row

from ledger import merkle
from ledger.errors import IntegrityViolationError, NotFoundError, ValidationError
from ledger.store import PostgresSql, StoreAdmin, StoredRecord, canonical_record, parse_lines

TREE_LOCK = 0x54524545  # advisory lock key: one process extends the tree at a time ("TREE")
CHUNK = 50_000  # leaves written per transaction
LEAVES, NODES, HEADS = "ledger_merkle_leaves", "ledger_merkle_nodes", "ledger_tree_heads"


# ----- signed tree heads -----


@dataclass(frozen=True)
class TreeHead:
    """A signed statement: the log had `tree_size` events with this Merkle `root`."""

    tree_size: int
    root: str  # hex
    timestamp: str  # RFC 3339 UTC
    key_id: str
    signature: str  # hex

    def message(self) -> bytes:
        return signed_message(self.tree_size, bytes.fromhex(self.root), self.timestamp)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TreeHead:
        try:
            head = cls(
                tree_size=int(data["tree_size"]),
                root=str(data["root"]),
                timestamp=str(data["timestamp"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
            )
            if len(bytes.fromhex(head.root)) != 32 or head.tree_size < 0:
                raise ValueError
            bytes.fromhex(head.signature)
        except (KeyError, TypeError, ValueError):
            raise ValidationError("not a signed tree head") from None
        return head


def signed_message(tree_size: int, root: bytes, timestamp: str) -> bytes:
    return f"ledger-sth-v1\n{tree_size}\n{root.hex()}\n{timestamp}\n".encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_hex(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def new_signing_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key written to `path` (PEM, PKCS#8, readable by its owner only)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(pem)
    return key


def load_signing_key(path: str | None = None, pem: str | None = None) -> Ed25519PrivateKey:
    """The signing key from a PEM file or the PEM text itself (an environment variable)."""
    data = pem.encode() if pem else Path(path).read_bytes() if path else None
    if data is None:
        msg = "no signing key: set LEDGER_AUDIT_KEY_FILE (a PEM file) or LEDGER_AUDIT_KEY (PEM text)"
        raise ValidationError(msg)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationError("the signing key is not an Ed25519 key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits (raw) or as a PEM file's path."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        pass
    loaded = serialization.load_pem_public_key(Path(text).read_bytes())
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValidationError("the public key is not an Ed25519 key")
    return loaded


def sign(key: Ed25519PrivateKey, tree_size: int, root: bytes, now: datetime) -> TreeHead:
    timestamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    signature = key.sign(signed_message(tree_size, root, timestamp))
    return TreeHead(tree_size, root.hex(), timestamp, key_id(key.public_key()), signature.hex())


def head_is_signed_by(head: TreeHead, public: Ed25519PublicKey) -> bool:
    if head.key_id != key_id(public):
        return False
    try:
        public.verify(bytes.fromhex(head.signature), head.message())
    except InvalidSignature:
        return False
    return True


# ----- offline checks (no store, no network) -----


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(public: Ed25519PublicKey, head: TreeHead, proof: dict[str, Any] | None) -> CheckResult:
    """Verifies a signed head, and a proof against it: an inclusion proof (the event's record
    hashes to the proven leaf) or a consistency proof from an older head it carries."""
    if not head_is_signed_by(head, public):
        return CheckResult(False, "the tree head's signature does not verify with this key")
    if proof is None:
        return CheckResult(True)
    try:
        kind = proof["kind"]
        root = bytes.fromhex(head.root)
        if int(proof["tree_size"]) != head.tree_size:
            return CheckResult(False, "the proof is for another tree size than the head's")
        path = [bytes.fromhex(h) for h in proof["path"]]
        if kind == "inclusion":
            record = record_from_json(proof["event"])
            leaf = merkle.leaf_hash(canonical_record(*record))
            if leaf.hex() != proof["leaf_hash"]:
                return CheckResult(False, "the event does not hash to the proven leaf")
            ok = merkle.verify_inclusion(int(proof["leaf_index"]), head.tree_size, leaf, path, root)
            return CheckResult(ok, None if ok else "the audit path does not lead to the signed root")
        if kind == "consistency":
            older = TreeHead.from_dict(proof["from_head"])
            if not head_is_signed_by(older, public):
                return CheckResult(False, "the older head's signature does not verify with this key")
            ok = merkle.verify_consistency(
                older.tree_size, head.tree_size, bytes.fromhex(older.root), root, path
            )
            return CheckResult(ok, None if ok else "the older tree is not a prefix of the newer one")
    except (KeyError, TypeError, ValueError) as error:
        return CheckResult(False, f"malformed proof: {error}")
    return CheckResult(False, f"unknown proof kind {kind!r}")


def record_from_json(event: dict[str, Any]) -> tuple[int, str, int, str, bytes]:
    return (
        int(event["position"]),
        str(event["stream_id"]),
        int(event["version"]),
        str(event["topic"]),
        str(event["state"]).encode(),
    )


# ----- the tree in the store -----


class TransparencyLog:
    """The Merkle tree of a store's history and its signed heads."""

    def __init__(self, admin: StoreAdmin) -> None:
        self.admin = admin
        self.sql = admin.sql
        self.leaves, self.nodes, self.heads = (admin.table(t) for t in (LEAVES, NODES, HEADS))

    def create_tables(self) -> None:
        blob = "bytea" if self.admin.is_postgres else "BLOB"
        for statement in (
            f"CREATE TABLE IF NOT EXISTS {self.leaves} (idx bigint PRIMARY KEY, "
            f"position bigint NOT NULL UNIQUE, hash {blob} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.nodes} (level smallint NOT NULL, idx bigint NOT NULL, "
            f"hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
            f"CREATE TABLE IF NOT EXISTS {self.heads} (tree_size bigint NOT NULL, root text NOT NULL, "
            "timestamp text NOT NULL, key_id text NOT NULL, signature text NOT NULL, "
            "PRIMARY KEY (tree_size, key_id, timestamp))",
        ):
            self.sql.execute(statement, ())

    def size(self) -> int:
        rows = self.sql.fetch(f"SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM {self.leaves}", ())
        return int(rows[0]["n"])

    def extend(self) -> int:
        """Adds the events appended since the last leaf; returns the tree's size."""
        with self.sql.advisory_lock(TREE_LOCK) as held:
            if not held:
                return self.size()  # another process is extending it now
            size = self.size()
            pending = self.lookup(merkle.Frontier.nodes_of(size))
            frontier = merkle.Frontier(size, [pending[n] for n in merkle.Frontier.nodes_of(size)])
            after = self._position_of(size - 1) if size else 0
            with ThreadPoolExecutor(1, thread_name_prefix="merkle-writer") as writer:
                # Chunk k is written (waiting on the server) while chunk k+1 is read and hashed;
                # one writer, so chunks land in order, and a failed one stops the rest.
                written: Future[None] | None = None
                while True:
                    chunk = self._leaf_hashes_after(after)
                    if written is not None:
                        written.result()
                    if not chunk:
                        return frontier.size
                    first = frontier.size
                    nodes = frontier.extend([leaf for _, leaf in chunk])
                    leaves = [(first + n, position, leaf) for n, (position, leaf) in enumerate(chunk)]
                    written = writer.submit(self._write, leaves, nodes)
                    after = chunk[-1][0]

    def _leaf_hashes_after(self, position: int) -> list[tuple[int, bytes]]:
        """(position, leaf hash) of up to `CHUNK` events after `position`. PostgreSQL hashes them
        itself (the canonical record as `ledger_append` builds it), so only hashes travel."""
        if isinstance(self.sql, PostgresSql):
            with self.sql.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(self._pg_leaf_sql, (position, CHUNK), binary=True)
                return [(int(p), bytes(h)) for p, h in curs.fetchall()]
        records = itertools.islice(self._events_after(position), CHUNK)
        return [(r.position, merkle.leaf_hash(canonical_record(*_fields(r)))) for r in records]

    @property
    def _pg_leaf_sql(self) -> bytes:
        events = self.admin.events
        return (
            "SELECT notification_id, sha256('\\x00'::bytea || convert_to(notification_id::text || chr(10) "
            "|| originator_id::text || chr(10) || originator_version::text || chr(10) || topic || chr(10), "
            f"'UTF8') || state) FROM {events} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).encode()

    def _events_after(self, position: int) -> Iterator[StoredRecord]:
        return (r for r in self.admin.records(after=position) if r.topic)  # events, not orphan links

    def _write(self, leaves: list[tuple[int, int, bytes]], nodes: list[tuple[int, int, bytes]]) -> None:
        if isinstance(self.sql, PostgresSql):  # COPY: a tenth of the cost of INSERTs per row
            with self.sql.datastore.transaction(commit=True) as curs:
                for table, columns, rows in (
                    (self.leaves, "idx, position, hash", leaves),
                    (self.nodes, "level, idx, hash", nodes),
                ):
                    # Text rows made here in one pass: psycopg's per-row writer costs more.
                    data = "".join([f"{a}\t{b}\t\\\\x{h.hex()}\n" for a, b, h in rows])
                    with curs.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        copy.write(data.encode())
            return
        self.sql.write([
            (f"INSERT INTO {self.leaves} (idx, position, hash) VALUES (%s, %s, %s)", leaves),
            (f"INSERT INTO {self.nodes} (level, idx, hash) VALUES (%s, %s, %s)", nodes),
        ])

    def _position_of(self, index: int) -> int:
        rows = self.sql.fetch(f"SELECT position FROM {self.leaves} WHERE idx = %s", (index,))
        if not rows:
            raise NotFoundError(f"leaf {index} not found")
        return int(rows[0]["position"])

    def lookup(self, wanted: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        """The stored hashes of these perfect subtrees (leaves are level 0)."""
        wanted = list(dict.fromkeys(wanted))
        found: dict[merkle.Node, bytes] = {}
        leaves = [index for level, index in wanted if level == 0]
        inner = [(level, index) for level, index in wanted if level > 0]
        if leaves:
            marks = ", ".join(["%s"] * len(leaves))
            for row in self.sql.fetch(f"SELECT idx, hash FROM {self.leaves} WHERE idx IN ({marks})", leaves):
                found[(0, int(row["idx"]))] = bytes(row["hash"])
        if inner:
            if isinstance(self.sql, PostgresSql):  # one index probe per node, planned once
                where = "(level, idx) IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))"
                params: list[Any] = [[level for level, _ in inner], [index for _, index in inner]]
            else:
                where = " OR ".join(["(level = %s AND idx = %s)"] * len(inner))
                params = [value for node in inner for value in node]
            for row in self.sql.fetch(f"SELECT level, idx, hash FROM {self.nodes} WHERE {where}", params):
                found[(int(row["level"]), int(row["idx"]))] = bytes(row["hash"])
        missing = [node for node in wanted if node not in found]
        if missing:
            raise NotFoundError(f"the tree has no node {missing[0]}: extend it first")
        return found

    def _sized(self, tree_size: int | None) -> int:
        size = self.size()
        if tree_size is None or tree_size > size:
            size = self.extend()
        if tree_size is None:
            return size
        if not 0 < tree_size <= size:
            raise NotFoundError(f"the log has {size} events, not {tree_size}")
        return tree_size

    def root(self, tree_size: int | None = None) -> tuple[int, bytes]:
        size = self._sized(tree_size) if tree_size != 0 else 0
        return size, merkle.root(size, self.lookup)

    def inclusion(self, position: int, tree_size: int | None = None) -> dict[str, Any]:
        """The event at `position`, its leaf and audit path in the tree of `tree_size` leaves."""
        size = self._sized(tree_size)
        rows = self.sql.fetch(f"SELECT idx, hash FROM {self.leaves} WHERE position = %s", (position,))
        if not rows:
            raise NotFoundError(f"no event at position {position}")
        index = int(rows[0]["idx"])
        if index >= size:
            raise NotFoundError(f"the event at position {position} is not in the tree of {size}")
        found = self.sql.fetch(
            f"SELECT originator_id, originator_version, topic, state FROM {self.admin.events} "
            f"WHERE {self.admin.position} = %s",
            (position,),
        )
        if not found:
            raise NotFoundError(f"no event at position {position}")
        row = found[0]
        record = StoredRecord(
            position, UUID(str(row["originator_id"])), int(row["originator_version"]), row["topic"],
            bytes(row["state"]), None, None,
        )
        return {
            "kind": "inclusion",
            "tree_size": size,
            "leaf_index": index,
            "leaf_hash": bytes(rows[0]["hash"]).hex(),
            "event": {
                "position": record.position,
                "stream_id": str(record.stream_id),
                "version": record.version,
                "topic": record.topic,
                "state": record.state.decode(),
            },
            "path": [h.hex() for h in merkle.inclusion_path(index, size, self.lookup)],
        }

    def consistency(self, first: int, second: int | None = None) -> dict[str, Any]:
        size = self._sized(second)
        if not 0 <= first <= size:
            raise ValidationError(f"from_size must be between 0 and to_size ({size})")
        return {
            "kind": "consistency",
            "from_size": first,
            "tree_size": size,
            "path": [h.hex() for h in merkle.consistency_path(first, size, self.lookup)],
        }

    def sign_head(self, key: Ed25519PrivateKey, now: datetime) -> TreeHead:
        size, root = self.root()
        head = sign(key, size, root, now)
        self.sql.execute(
            f"INSERT INTO {self.heads} (tree_size, root, timestamp, key_id, signature) "
            "VALUES (%s, %s, %s, %s, %s)",
            (head.tree_size, head.root, head.timestamp, head.key_id, head.signature),
        )
        return head

    def latest_head(self, key: str | None = None) -> TreeHead | None:
        """The largest signed head (of the key with this id, if given)."""
        where, params = ("WHERE key_id = %s", (key,)) if key is not None else ("", ())
        rows = self.sql.fetch(
            f"SELECT tree_size, root, timestamp, key_id, signature FROM {self.heads} {where} "
            "ORDER BY tree_size DESC, timestamp DESC LIMIT 1",
            params,
        )
        return _head(rows[0]) if rows else None

    def store_head(self, head: TreeHead) -> bool:
        """Keeps a head signed elsewhere (an import); False if it is kept already."""
        rows = self.sql.fetch(
            f"SELECT 1 FROM {self.heads} WHERE tree_size = %s AND key_id = %s AND timestamp = %s",
            (head.tree_size, head.key_id, head.timestamp),
        )
        if rows:
            return False
        self.sql.execute(
            f"INSERT INTO {self.heads} (tree_size, root, timestamp, key_id, signature) "
            "VALUES (%s, %s, %s, %s, %s)",
            (head.tree_size, head.root, head.timestamp, head.key_id, head.signature),
        )
        return True

    def all_heads(self) -> Iterator[TreeHead]:
        """Every signed head, oldest first (what an export carries)."""
        rows = self.sql.fetch(
            f"SELECT tree_size, root, timestamp, key_id, signature FROM {self.heads} "
            "ORDER BY tree_size, timestamp, key_id",
            (),
        )
        return (_head(row) for row in rows)

    def signed_heads(self, limit: int = 100) -> list[TreeHead]:
        rows = self.sql.fetch(
            f"SELECT tree_size, root, timestamp, key_id, signature FROM {self.heads} "
            f"ORDER BY tree_size DESC, timestamp DESC LIMIT {int(limit)}",
            (),
        )
        return [
            TreeHead(int(r["tree_size"]), r["root"], r["timestamp"], r["key_id"], r["signature"])
            for r in rows
        ]


def _head(row: Any) -> TreeHead:
    return TreeHead(int(row["tree_size"]), row["root"], row["timestamp"], row["key_id"], row["signature"])


class HeadSigner:
    """The worker's periodic signing: extends the tree and signs a new head, but only when the
    log grew since the last head this key signed (an idle ledger does not pile up heads)."""

    def __init__(
        self, log: TransparencyLog, key: Ed25519PrivateKey, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.log, self.key = log, key
        self.key_id = key_id(key.public_key())
        self.clock = clock or (lambda: datetime.now(tz=UTC))

    def sign_if_grown(self) -> TreeHead | None:
        size = self.log.extend()
        last = self.log.latest_head(self.key_id)
        if size == 0 or (last is not None and last.tree_size >= size):
            return None
        return self.log.sign_head(self.key, self.clock())


# ----- signed heads in an export -----

HEAD_LINE_PREFIX = '{"kind":"tree_head",'  # an export's head lines start so; event lines with '{"position"'


def head_line(head: TreeHead) -> str:
    """A signed head as one line of an export (after the events): `{"kind":"tree_head", ...}`."""
    return json.dumps({"kind": "tree_head", **head.as_dict()}, separators=(",", ":")) + "\n"


def is_head_line(line: str) -> bool:
    return line.startswith(HEAD_LINE_PREFIX)


def heads_of_export(lines: Iterable[str]) -> list[TreeHead]:
    heads = []
    for number, line in enumerate(lines, start=1):
        if is_head_line(line):
            try:
                heads.append(TreeHead.from_dict(json.loads(line)))
            except (ValidationError, ValueError):
                raise ValidationError(f"line {number} is not a signed tree head") from None
    return heads


def check_heads(lines: Iterable[str], heads: list[TreeHead]) -> None:
    """Refuses (`IntegrityViolationError`) signed heads whose root is not the root of the
    exported history's first `tree_size` events; reads the export's event lines once."""
    wanted: dict[int, list[TreeHead]] = {}
    for head in heads:
        wanted.setdefault(head.tree_size, []).append(head)
    frontier = merkle.Frontier(0, [])

    def compare() -> None:
        for head in wanted.pop(frontier.size, []):
            if frontier.root().hex() != head.root:
                raise IntegrityViolationError(
                    f"import refused: the signed head of {head.tree_size} events (key {head.key_id}, "
                    f"{head.timestamp}) does not match the imported history"
                )

    compare()
    for record in parse_lines(line for line in lines if not is_head_line(line)):
        if not wanted:
            return
        if record.topic:
            frontier.append(merkle.leaf_hash(canonical_record(*_fields(record))))
            compare()
    if wanted:
        size = min(wanted)
        raise IntegrityViolationError(
            f"import refused: a signed head covers {size} events; the history has {frontier.size}"
        )


# ----- the store against a signed head -----


@dataclass(frozen=True)
class HeadVerification:
    ok: bool
    tree_size: int
    events_checked: int
    first_invalid_position: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_against(admin: StoreAdmin, head: TreeHead, public: Ed25519PublicKey | None) -> HeadVerification:
    """Recomputes the tree of the store's first `head.tree_size` events from the events
    themselves (not from the stored tree, which a rewrite could have recomputed too) and
    compares it with the signed head. A disagreement is named by the first position where
    the store and the head's tree part: the first leaf whose hash differs from the tree
    kept when the head was signed, else the first event beyond the store's end."""
    if public is not None and not head_is_signed_by(head, public):
        return HeadVerification(False, head.tree_size, 0, None, "the tree head's signature does not verify")
    log = TransparencyLog(admin)
    frontier = merkle.Frontier(0, [])
    first_bad: int | None = None
    kept = _kept_leaves(log)
    last_position = 0
    try:
        for record in log._events_after(0):
            if frontier.size == head.tree_size:
                break
            leaf = merkle.leaf_hash(canonical_record(*_fields(record)))
            if first_bad is None and kept is not None:
                stored = kept.get(frontier.size)
                if stored is not None and stored != (record.position, leaf):
                    first_bad = record.position
            frontier.append(leaf)
            last_position = record.position
    except Exception as error:  # a dropped table or an unreadable store is a failure, not a crash
        reason = f"the store could not be read ({type(error).__name__}): a table may be missing"
        return HeadVerification(False, head.tree_size, frontier.size, last_position + 1, reason)
    if frontier.size < head.tree_size:
        return HeadVerification(
            False, head.tree_size, frontier.size, last_position + 1,
            f"the store has {frontier.size} events; the signed head covers {head.tree_size} (truncated)",
        )
    if frontier.root().hex() != head.root:
        return HeadVerification(
            False, head.tree_size, frontier.size, first_bad,
            "the store's history does not hash to the signed root (rewritten or forked)",
        )
    return HeadVerification(True, head.tree_size, frontier.size)


def _kept_leaves(log: TransparencyLog) -> dict[int, tuple[int, bytes]] | None:
    try:
        rows = log.sql.fetch(f"SELECT idx, position, hash FROM {log.leaves}", ())
    except Exception:  # the tree's tables may be gone too
        return None
    return {int(r["idx"]): (int(r["position"]), bytes(r["hash"])) for r in rows}


def _fields(record: StoredRecord) -> tuple[int, Any, int, str, bytes]:
    return record.position, record.stream_id, record.version, record.topic, record.state


def dump(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True)

"""Verifiable history on both stores: the Merkle tree, signed heads, proofs, and a store checked
against a signed head: truncation, dropped tables, a consistently rewritten chain and a fork
are caught and named (SPEC 4.7)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle
from ledger.application import LedgerApplication
from ledger.store import EVENTS_TABLE, HASHES_TABLE, canonical_record
from ledger.transparency import TreeHead, check, verify_against
from tests.integration.test_store_integrity import RawStore, scenario
from tests.tampering import rewrite_consistently

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def reference_root(app: LedgerApplication, size: int) -> bytes:
    """The RFC 9162 root recomputed from the exported records with no stored tree."""
    leaves = [
        canonical_record(r.position, r.stream_id, r.version, r.topic, r.state)
        for r in app.admin.records()
        if r.topic
    ][:size]

    def mth(items: list[bytes]) -> bytes:
        if not items:
            return hashlib.sha256(b"").digest()
        if len(items) == 1:
            return merkle.leaf_hash(items[0])
        k = merkle.split(len(items))
        return merkle.node_hash(mth(items[:k]), mth(items[k:]))

    return mth(leaves)


def test_signed_heads_and_proofs_verify_as_the_log_grows(
    app: LedgerApplication, key: Ed25519PrivateKey
) -> None:
    scenario(app)
    first = app.transparency.sign_head(key, NOW)
    assert bytes.fromhex(first.root) == reference_root(app, first.tree_size)
    app.transfer("TOLL-JKT-01", "bob", "alice", 3)
    second = app.transparency.sign_head(key, NOW)
    assert second.tree_size > first.tree_size
    assert bytes.fromhex(second.root) == reference_root(app, second.tree_size)
    assert [h.tree_size for h in app.transparency.signed_heads()] == [second.tree_size, first.tree_size]

    public = key.public_key()
    for position in (1, 5, app.admin.head_position()):
        proof = app.transparency.inclusion(position, second.tree_size)
        assert check(public, second, proof).ok
        tampered = {**proof, "event": {**proof["event"], "state": proof["event"]["state"].replace("2", "3")}}
        assert not check(public, second, tampered).ok
    consistency = {
        **app.transparency.consistency(first.tree_size, second.tree_size),
        "from_head": first.as_dict(),
    }
    assert check(public, second, consistency).ok
    assert not check(Ed25519PrivateKey.generate().public_key(), second, consistency).ok
    assert verify_against(app.admin, second, public).ok


def test_a_truncated_tail_is_caught_naming_the_first_missing_position(
    app: LedgerApplication, store_url: str, key: Ed25519PrivateKey
) -> None:
    scenario(app)
    head = app.transparency.sign_head(key, NOW)
    last = app.admin.head_position()
    raw = RawStore(store_url)
    raw.execute(f"DELETE FROM {raw.table(EVENTS_TABLE)} WHERE {raw.position} = {last}", bypass_triggers=True)
    raw.execute(f"DELETE FROM {raw.table(HASHES_TABLE)} WHERE position = {last}", bypass_triggers=True)

    assert app.admin.verify().ok  # the hash chain alone cannot tell
    result = verify_against(app.admin, head, key.public_key())
    assert not result.ok
    assert result.first_invalid_position == last
    assert "truncated" in (result.reason or "")


def test_dropped_history_tables_are_caught(
    app: LedgerApplication, store_url: str, key: Ed25519PrivateKey
) -> None:
    scenario(app)
    head = app.transparency.sign_head(key, NOW)
    raw = RawStore(store_url)
    for table in (EVENTS_TABLE, HASHES_TABLE):
        raw.execute(f"DROP TABLE {raw.table(table)}{' CASCADE' if raw.postgres else ''}")

    result = verify_against(app.admin, head, key.public_key())
    assert not result.ok
    assert result.first_invalid_position == 1


def test_a_consistently_rewritten_chain_is_caught_naming_the_rewritten_position(
    app: LedgerApplication, store_url: str, key: Ed25519PrivateKey
) -> None:
    scenario(app)
    head = app.transparency.sign_head(key, NOW)
    position = rewrite_consistently(app, RawStore(store_url))  # the hash chain verifies again

    result = verify_against(app.admin, head, key.public_key())
    assert not result.ok
    assert result.first_invalid_position == position


def test_a_forked_history_is_not_consistent_with_the_signed_head(
    app: LedgerApplication, store_url: str, key: Ed25519PrivateKey
) -> None:
    """The last event replaced by another one (same size, other history): a fork."""
    scenario(app)
    head = app.transparency.sign_head(key, NOW)
    last = app.admin.head_position()
    raw = RawStore(store_url)
    raw.execute(
        f"UPDATE {raw.table(EVENTS_TABLE)} SET topic = topic || 'X' WHERE {raw.position} = {last}",
        bypass_triggers=True,
    )
    result = verify_against(app.admin, head, key.public_key())
    assert not result.ok
    assert result.first_invalid_position == last


def test_audit_check_needs_no_store(tmp_path: Path, app: LedgerApplication, key: Ed25519PrivateKey) -> None:
    scenario(app)
    head = app.transparency.sign_head(key, NOW)
    proof = app.transparency.inclusion(3)
    (tmp_path / "head.json").write_text(json.dumps(head.as_dict()))
    (tmp_path / "proof.json").write_text(json.dumps(proof))
    public = key.public_key().public_bytes_raw().hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "POSTGRES_"))}
    env["LEDGER_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # unreachable: never used
    ledger = Path(sys.executable).parent / "ledger"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ledger), "audit", "check", "--public-key", public, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run("--head", "head.json", "--proof", "proof.json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    forged = {**head.as_dict(), "tree_size": head.tree_size + 1}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = run("--head", "forged.json")
    assert refused.returncode == 1
    assert TreeHead.from_dict(forged).tree_size == head.tree_size + 1

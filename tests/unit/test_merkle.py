"""RFC 9162 tree hashing and proofs, against a straightforward implementation written here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle

pytestmark = pytest.mark.unit


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 2.1.1 states it, recursively over the leaf data."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def build(leaves: list[bytes]) -> dict[merkle.Node, bytes]:
    """Every perfect subtree of the log, as a store keeps them (made by the frontier)."""
    frontier = merkle.Frontier(0, [])
    nodes: dict[merkle.Node, bytes] = {}
    for data in leaves:
        for level, index, value in frontier.append(merkle.leaf_hash(data)):
            nodes[(level, index)] = value
    return nodes


def lookup_in(nodes: dict[merkle.Node, bytes]) -> merkle.Lookup:
    def lookup(needed: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        return {node: nodes[node] for node in needed}

    return lookup


logs = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@given(logs)
def test_every_root_equals_the_reference(leaves: list[bytes]) -> None:
    nodes = build(leaves)
    for size in range(len(leaves) + 1):
        assert merkle.root(size, lookup_in(nodes)) == reference_mth(leaves[:size])


@given(logs)
def test_the_frontier_root_equals_the_reference(leaves: list[bytes]) -> None:
    frontier = merkle.Frontier(0, [])
    for data in leaves:
        frontier.append(merkle.leaf_hash(data))
    assert frontier.root() == reference_mth(leaves)
    batched = merkle.Frontier(0, [])
    nodes = batched.extend([merkle.leaf_hash(data) for data in leaves])
    assert batched.root() == frontier.root()
    assert {(level, index): value for level, index, value in nodes} == {
        node: value for node, value in build(leaves).items() if node[0] > 0
    }
    resumed = merkle.Frontier(
        len(leaves), [build(leaves)[node] for node in merkle.Frontier.nodes_of(len(leaves))]
    )
    assert resumed.root() == frontier.root()


@given(logs, st.data())
def test_every_inclusion_proof_verifies_and_a_flipped_byte_fails_it(
    leaves: list[bytes], data: st.DataObject
) -> None:
    nodes = build(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    root = reference_mth(leaves[:size])
    leaf = merkle.leaf_hash(leaves[index])
    path = merkle.inclusion_path(index, size, lookup_in(nodes))
    assert merkle.verify_inclusion(index, size, leaf, path, root)
    assert not merkle.verify_inclusion(index, size, flip(leaf), path, root)
    assert not merkle.verify_inclusion(index, size, leaf, path, flip(root))
    if path:
        at = data.draw(st.integers(0, len(path) - 1))
        bad = [*path[:at], flip(path[at]), *path[at + 1 :]]
        assert not merkle.verify_inclusion(index, size, leaf, bad, root)
    other = (index + 1) % size
    if leaves[other] != leaves[index]:  # the same path does not place the leaf elsewhere
        assert not merkle.verify_inclusion(other, size, leaf, path, root)


@given(logs, st.data())
def test_every_consistency_proof_verifies_and_a_flipped_byte_fails_it(
    leaves: list[bytes], data: st.DataObject
) -> None:
    nodes = build(leaves)
    second = data.draw(st.integers(1, len(leaves)))
    first = data.draw(st.integers(1, second))
    first_root, second_root = reference_mth(leaves[:first]), reference_mth(leaves[:second])
    path = merkle.consistency_path(first, second, lookup_in(nodes))
    assert merkle.verify_consistency(first, second, first_root, second_root, path)
    assert not merkle.verify_consistency(first, second, flip(first_root), second_root, path)
    assert not merkle.verify_consistency(first, second, first_root, flip(second_root), path)
    if path:
        at = data.draw(st.integers(0, len(path) - 1))
        assert not merkle.verify_consistency(
            first, second, first_root, second_root, [*path[:at], flip(path[at]), *path[at + 1 :]]
        )


def test_a_forked_history_is_not_consistent() -> None:
    honest = [b"a", b"b", b"c", b"d", b"e"]
    forked = [b"a", b"b", b"X", b"d", b"e", b"f"]
    path = merkle.consistency_path(5, 6, lookup_in(build(forked)))
    assert not merkle.verify_consistency(5, 6, reference_mth(honest), reference_mth(forked), path)


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_the_readme_worked_example() -> None:
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.store import canonical_record
    from ledger.transparency import key_id, public_hex, sign

    stream = "3c6e2b4a-0f00-5d3a-9d8e-2f1b6a7c8d9e"
    registered = b'{"asset_id":"TOLL-JKT-01"}'
    first = canonical_record(1, stream, 1, "ledger.domain.asset:Asset.Registered", registered)
    second = canonical_record(2, stream, 2, "ledger.domain.asset:Asset.Approved", b"{}")
    leaves = merkle.leaf_hash(first), merkle.leaf_hash(second)
    assert leaves[0].hex() == "4292f5cb7c164b8db114f51a621cec955e4e494590176cebc0b611ece66e1341"
    assert leaves[1].hex() == "89b4c00cd74b436d37bd3ef454b5a3cfacc2f8c8e307bb27dc216df40606b836"
    root = merkle.node_hash(*leaves)
    assert root.hex() == "b5d4e3bb929048686f40f5b18ad6a8b37997c89d5419bc464da06665b6db97a9"
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    assert public_hex(key.public_key()) == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert key_id(key.public_key()) == "56475aa75463474c"
    head = sign(key, 2, root, datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    assert head.signature == (
        "1142f1686e1538222e6f90a5a6228b8cedf547a4ef05414f0f6bbcb9c506847a"
        "d6f6a5430bac1b9c3a3b3e2f0635db5367159444a512d994381ccd4455112a0e"
    )
    assert merkle.verify_inclusion(0, 2, leaves[0], [leaves[1]], root)

"""RFC 9162 Merkle tree hashing over the event log: tree heads, audit paths, consistency proofs.

The log's leaves are its events in position order; leaf `i` (from 0) is the i-th event.
Hashing is RFC 9162 section 2.1 with SHA-256:

- a leaf:  `SHA-256(0x00 || canonical record)` (`ledger.store.canonical_record`);
- a node:  `SHA-256(0x01 || left || right)`;
- the root of n > 1 leaves splits them at k, the largest power of two below n:
  `MTH(D[0:n]) = node(MTH(D[0:k]), MTH(D[k:n]))`; the empty tree's root is `SHA-256("")`.

Proofs are made from perfect subtrees (2^level leaves starting at a multiple of 2^level),
which the store keeps as the log grows (`ledger.transparency`); this module only needs a
function that returns such subtrees' hashes, and verifies proofs with nothing else at all
(RFC 9162 sections 2.1.3.2 and 2.1.4.2), so an auditor's check needs no store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
Node = tuple[int, int]  # (level, index): the perfect subtree of leaves [index << level, (index + 1) << level)
Lookup = Callable[[Iterable[Node]], dict[Node, bytes]]


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly below n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _ranges(start: int, end: int) -> list[Node]:
    """The perfect subtrees whose hashes make MTH(D[start:end]), for a `start` aligned as the
    tree's recursion aligns it."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return [(level, start >> level)]
    k = split(size)
    return _ranges(start, start + k) + _ranges(start + k, end)


def _mth(start: int, end: int, nodes: dict[Node, bytes]) -> bytes:
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return nodes[(level, start >> level)]
    k = split(size)
    return node_hash(_mth(start, start + k, nodes), _mth(start + k, end, nodes))


def _subtrees_of_path(index: int, start: int, end: int) -> list[tuple[int, int]]:
    """RFC 9162 PATH(m, D[start:end]) as the ranges whose MTHs it lists, leaf to root."""
    if end - start == 1:
        return []
    k = split(end - start)
    if index < start + k:
        return [*_subtrees_of_path(index, start, start + k), (start + k, end)]
    return [*_subtrees_of_path(index, start + k, end), (start, start + k)]


def _subtrees_of_consistency(m: int, start: int, end: int, whole: bool) -> list[tuple[int, int]]:
    """RFC 9162 SUBPROOF(m, D[start:end], b) as the ranges whose MTHs it lists."""
    if start + m == end:
        return [] if whole else [(start, end)]
    k = split(end - start)
    if m <= k:
        return [*_subtrees_of_consistency(m, start, start + k, whole), (start + k, end)]
    return [*_subtrees_of_consistency(m - k, start + k, end, False), (start, start + k)]


def _hashes(ranges: Sequence[tuple[int, int]], lookup: Lookup) -> list[bytes]:
    needed = [node for start, end in ranges for node in _ranges(start, end)]
    nodes = lookup(needed)
    return [_mth(start, end, nodes) for start, end in ranges]


def root(size: int, lookup: Lookup) -> bytes:
    """MTH of the first `size` leaves."""
    if size == 0:
        return EMPTY_ROOT
    return _hashes([(0, size)], lookup)[0]


def inclusion_path(index: int, size: int, lookup: Lookup) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        msg = f"leaf {index} is not in a tree of {size}"
        raise ValueError(msg)
    return _hashes(_subtrees_of_path(index, 0, size), lookup)


def consistency_path(first: int, second: int, lookup: Lookup) -> list[bytes]:
    """The proof that the tree of `first` leaves is a prefix of the tree of `second` (2.1.4.1)."""
    if not 0 <= first <= second:
        msg = f"no consistency proof from {first} to {second}"
        raise ValueError(msg)
    if first in (0, second):
        return []
    return _hashes(_subtrees_of_consistency(first, 0, second, True), lookup)


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2 (with its two trivial cases: an empty first tree, equal sizes)."""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not path and first_root == EMPTY_ROOT
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


class Frontier:
    """The perfect subtrees a growing tree has not yet paired (one per set bit of its size):
    appending a leaf pairs them as a binary counter carries, and yields every node that
    became complete, so a store keeps every perfect subtree at a cost of one node per leaf."""

    def __init__(self, size: int, pending: Sequence[bytes]) -> None:
        """`pending` are the hashes of the size's perfect subtrees, largest (leftmost) first."""
        if len(pending) != bin(size).count("1"):
            msg = "the frontier does not match the tree size"
            raise ValueError(msg)
        self.size = size
        self._stack = list(pending)

    @staticmethod
    def nodes_of(size: int) -> list[Node]:
        """The perfect subtrees of a tree of `size` leaves, largest first."""
        found, offset = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                found.append((level, offset >> level))
                offset += 1 << level
        return found

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Adds a leaf; returns the completed nodes as (level, index, hash), leaf first."""
        index = self.size
        made = [(0, index, leaf)]
        current, level = leaf, 0
        while index >> level & 1:
            current = node_hash(self._stack.pop(), current)
            level += 1
            made.append((level, index >> level, current))
        self._stack.append(current)
        self.size += 1
        return made

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """`append` for many leaves; returns only the completed inner nodes (level >= 1)."""
        made: list[tuple[int, int, bytes]] = []
        stack, index = self._stack, self.size
        sha256, add = hashlib.sha256, made.append
        for leaf in leaves:
            current, level = leaf, 0
            while index >> level & 1:
                current = sha256(b"\x01" + stack.pop() + current).digest()
                level += 1
                add((level, index >> level, current))
            stack.append(current)
            index += 1
        self.size = index
        return made

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        current = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            current = node_hash(left, current)
        return current

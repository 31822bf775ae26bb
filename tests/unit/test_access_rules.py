"""The rules of access (SPEC 4.7, 5): a revoked key is neither rotated nor revoked again; an actor
from before actors reads as `unknown`; a caller's idempotency key is scoped to the caller."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.actor import UNKNOWN, Actor, acting_as, current_actor, system
from ledger.domain.apikey import ApiKey, ApiKeyTerms
from ledger.errors import InvalidStateError

TERMS = ApiKeyTerms("0123456789abcdef", "investor", "alice", None)
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_revoked_key_is_neither_rotated_nor_revoked_again() -> None:
    key = ApiKey.create(TERMS)
    key.rotate(LATER)
    key.revoke()
    events = len(key.pending_events)
    for change in (key.revoke, lambda: key.rotate(LATER)):
        with pytest.raises(InvalidStateError):
            change()
    assert len(key.pending_events) == events
    assert [type(e).__name__ for e in key.collect_events()] == ["Created", "Rotated", "Revoked"]


def test_a_key_event_never_carries_a_secret() -> None:
    key = ApiKey.create(TERMS)
    key.rotate(LATER)
    fields = set().union(*(vars(e) for e in key.collect_events()))
    assert not {f for f in fields if "secret" in f or "hash" in f}


@pytest.mark.parametrize("stored", [None, "admin", {}, {"principal": 7}, []])
def test_an_event_without_a_readable_actor_reads_as_unknown(stored: object) -> None:
    assert Actor.from_state(stored) == UNKNOWN


def test_an_actor_reads_back_as_stored() -> None:
    actor = Actor("key:0123456789abcdef", "investor", "alice", "req-1")
    assert Actor.from_state(actor.as_state()) == actor


def test_idempotency_keys_are_scoped_to_callers_but_not_to_system_components() -> None:
    one, two = Actor("key:aaaaaaaaaaaaaaaa", "admin"), Actor("key:bbbbbbbbbbbbbbbb", "admin")
    assert one.scope("k") != two.scope("k")
    assert Actor("cli:olga").scope("k") != one.scope("k")
    assert system("worker").scope("chain-operation:1:X") == "chain-operation:1:X"


def test_acting_as_sets_the_actor_for_the_block_only() -> None:
    assert current_actor() is None
    with acting_as(system("mirror")) as actor:
        assert current_actor() == actor
    assert current_actor() is None

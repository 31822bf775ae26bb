"""The server-side `ledger_append` (PL/pgSQL, the fast path for small batches) links the chain
byte for byte as the Python definition in `ledger.store.hashchain` does, on random records:
stream ids, versions, topics in any script, and states of any bytes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.store import GENESIS, UNNEST_FROM, LedgerPostgresRecorder, hash_rows
from tests.conftest import scratch_schema_url

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)
records = st.tuples(st.uuids(), st.integers(1, 2**62), topics, st.binary(max_size=300))
batches = st.lists(records, min_size=1, max_size=UNNEST_FROM - 1)


@pytest.fixture(scope="module")
def recorder() -> Iterator[LedgerPostgresRecorder]:
    """One store for every example: each batch links to the chain the earlier ones left."""
    with scratch_schema_url() as url:
        application = LedgerApplication(store_env(url))
        yield cast(LedgerPostgresRecorder, application.recorder)
        application.close()


def stored_links(recorder: LedgerPostgresRecorder, after: int) -> dict[int, tuple[int, bytes]]:
    with recorder.datastore.get_connection() as conn:
        rows = conn.execute(
            b"SELECT position, prev_position, hash FROM "
            + recorder.hashes.as_bytes(None)
            + b" WHERE position >= %s ORDER BY position",
            (after,),
        ).fetchall()
    return {int(r["position"]): (int(r["prev_position"]), bytes(r["hash"])) for r in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches)
def test_ledger_append_links_as_the_python_chain_does(
    recorder: LedgerPostgresRecorder, batch: list[tuple[UUID, int, str, bytes]]
) -> None:
    # A stream id of the same shape, unique across examples (the store refuses a version twice).
    events = [StoredEvent(UUID(int=s.int ^ uuid4().int), v, t, b) for s, v, t, b in batch]
    commit_info: dict[str, Any] = {}
    positions = recorder._append_in_one_call(events, commit_info=commit_info)  # one `ledger_append` call
    prev_position = commit_info["prev_position"]
    links = stored_links(recorder, prev_position)
    prev_hash = links[prev_position][1] if prev_position else GENESIS

    expected = hash_rows(events, positions, prev_position, prev_hash)

    assert [(p, *links[p]) for p in positions] == expected

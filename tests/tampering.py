"""Ways to tamper with a store behind the ledger's back (triggers bypassed), for the tests that
show verification catches them. Each returns the first position the tampering changed."""

from __future__ import annotations

from ledger.application import LedgerApplication
from ledger.store import EVENTS_TABLE, HASHES_TABLE, canonical_record, chain_hash
from tests.integration.test_store_integrity import RawStore


def truncate_tail(app: LedgerApplication, raw: RawStore) -> int:
    last = app.admin.head_position()
    raw.execute(f"DELETE FROM {raw.table(EVENTS_TABLE)} WHERE {raw.position} = {last}", bypass_triggers=True)
    raw.execute(f"DELETE FROM {raw.table(HASHES_TABLE)} WHERE position = {last}", bypass_triggers=True)
    return last


def drop_tables(app: LedgerApplication, raw: RawStore) -> int:
    for table in (EVENTS_TABLE, HASHES_TABLE):
        raw.execute(f"DROP TABLE {raw.table(table)}{' CASCADE' if raw.postgres else ''}")
    return 1


def rewrite_consistently(app: LedgerApplication, raw: RawStore) -> int:
    """An event altered and every hash link from there recomputed: the hash chain verifies."""
    records = [r for r in app.admin.records() if r.topic]
    victim = next(r for r in records if r.topic.endswith("TokensTransferred"))
    forged = victim.state.replace(b'"quantity":20', b'"quantity":21')
    raw.execute(
        f"UPDATE {raw.table(EVENTS_TABLE)} SET state = ? WHERE {raw.position} = ?",
        (forged, victim.position),
        bypass_triggers=True,
    )
    prev = bytes(32)
    if victim.prev_position:
        prev = next(r.hash or b"" for r in records if r.position == victim.prev_position)
    for record in records:
        if record.position < victim.position:
            continue
        state = forged if record.position == victim.position else record.state
        prev = chain_hash(
            prev, canonical_record(record.position, record.stream_id, record.version, record.topic, state)
        )
        raw.execute(
            f"UPDATE {raw.table(HASHES_TABLE)} SET hash = ? WHERE position = ?",
            (prev, record.position),
            bypass_triggers=True,
        )
    assert app.admin.verify().ok
    return victim.position

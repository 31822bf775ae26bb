"""The mirror's bulk path: creation events given as topic and state, never built as objects.

`ChainLog.mirrored_state` must give the state `ChainLog.mirrored` would store, and
`encode_plain_state` the bytes (or at least the decoded values) the mapper would
store, with orjson and through every fallback.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.commit import encode_plain_state
from ledger.config import store_env
from ledger.domain.chain import ChainLog

LOG: dict[str, Any] = {
    "chain_id": 31337,
    "asset_id": "TOLL-ROAD-A7",
    "address": "0x" + "Ab" * 20,
    "block_number": 651,
    "block_hash": "0x" + "5f" * 32,
    "log_index": 31,
    "tx_hash": "0x" + "cd" * 32,
    "name": "Transfer",
    "args": {"from": "0x" + "34" * 20, "to": "0x" + "56" * 20, "value": 12_345},
}


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mapper[Any]]:
    path = Path(tmp_path_factory.mktemp("plain")) / "ledger.db"
    app = LedgerApplication(store_env(f"sqlite:///{path}"))
    try:
        yield app.mapper
    finally:
        app.close()


def decoded(mapper: Mapper[Any], originator_id: Any, state: bytes) -> Any:
    return mapper.to_domain_event(StoredEvent(originator_id, 1, get_topic(ChainLog.Mirrored), state))


def test_the_bulk_state_of_a_mirrored_log_decodes_to_the_event_mirrored_builds(mapper: Mapper[Any]) -> None:
    now = datetime(2026, 12, 2, 6, 52, 48, 249198, tzinfo=UTC)
    log_id, state = ChainLog.mirrored_state(now, dict(LOG))
    event = decoded(mapper, log_id, encode_plain_state(mapper, state))
    built = ChainLog.mirrored(**LOG)
    assert type(event) is ChainLog.Mirrored
    assert event.originator_id == built.originator_id == log_id
    assert event.originator_version == built.originator_version
    assert {**vars(event), "timestamp": None} == {**vars(built), "timestamp": None}
    assert event.timestamp == now


def test_the_bulk_state_is_stored_as_the_mapper_stores_the_event(mapper: Mapper[Any]) -> None:
    event = ChainLog.mirrored(**LOG)
    _, state = ChainLog.mirrored_state(event.timestamp, dict(LOG))
    assert encode_plain_state(mapper, state) == mapper.to_stored_event(event).state


@pytest.mark.parametrize(
    "log", [{**LOG, "extra": 1}, {k: v for k, v in LOG.items() if k != "args"}], ids=["extra", "missing"]
)
def test_a_mirrored_log_with_other_fields_is_refused(log: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="a mirrored log has the fields"):
        ChainLog.mirrored_state(datetime.now(UTC), log)


def test_integers_beyond_64_bits_fall_back_to_the_transcoder(mapper: Mapper[Any]) -> None:
    amount = 250 * 10**18  # 250 tokens of 18 decimals: beyond orjson's integers
    log_id, state = ChainLog.mirrored_state(
        datetime.now(UTC), {**LOG, "args": {**LOG["args"], "value": amount}}
    )
    stored = encode_plain_state(mapper, state)
    assert stored == mapper.transcoder.encode(state)
    assert decoded(mapper, log_id, stored).args["value"] == amount


class _Zlib:
    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)


def test_a_compressing_mapper_gets_its_compressed_form(mapper: Mapper[Any]) -> None:
    compressing = Mapper(transcoder=mapper.transcoder, compressor=_Zlib())
    log_id, state = ChainLog.mirrored_state(datetime.now(UTC), dict(LOG))
    stored = encode_plain_state(compressing, state)
    assert zlib.decompress(stored) == mapper.transcoder.encode(state)
    assert decoded(compressing, log_id, stored).args == LOG["args"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.just(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=1))


@given(state=st.dictionaries(st.text(max_size=10), json_values | moments, max_size=6))
def test_any_plain_state_decodes_to_itself(mapper: Mapper[Any], state: dict[str, Any]) -> None:
    assert mapper.transcoder.decode(encode_plain_state(mapper, state)) == state

"""Every use of the `eventsourcing` library's private parts, in one place.

Checked against eventsourcing==9.5.6 (`requirements.lock`; `LIBRARY_VERSION`). Each is
here for speed, and an upgrade may change any of them without a word:
`tests/integration/test_library_parity.py` holds them to the library's public
behaviour, and fails first of all if the installed version is not the one checked.

- `insert_without_retry`: `PostgresApplicationRecorder.insert_events` without its retry
  decorator (`__wrapped__`): the ledger's recorder retries, looking up whether a batch
  whose commit was not acknowledged landed (`ledger.store.postgres`).
- `POSTGRES_WRITE_HOOKS`, `SQLITE_WRITE_HOOK`: the recorders' write-path steps the
  ledger's recorders override to write hash links, idempotency records and outbox
  entries in the append's transaction. The library passes `insert_events`'s keyword
  arguments on to them unchanged: that is how `idempotency`, `outbox` and the
  `commit_info` dict (the PostgreSQL recorder leaves a cursor in it between its two
  hooks, and the position before the batch for the committer) reach them.
- `transcoder_default`: the JSON transcoder's own encoding of a datetime (and the other
  types it knows), for orjson to write the very bytes the transcoder writes.
- `registered_handler`: the function a view's `singledispatchmethod` has registered for
  an event class (its `dispatcher`), looked up once per class by the projection runner.
- `EventDecoder`: domain events from stored events as `Mapper.to_domain_event` makes
  them, in about half the time (the JSON decoder's scanner, the id convertor, the
  event built without its `__init__`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, cast

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent, find_id_convertor
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import resolve_topic

LIBRARY_VERSION = "9.5.6"
POSTGRES_WRITE_HOOKS = ("_insert_stored_events", "_fetch_ids_after_insert_events")
SQLITE_WRITE_HOOK = "_insert_events"


def insert_without_retry(
    recorder: PostgresApplicationRecorder, stored_events: Sequence[StoredEvent], **kwargs: Any
) -> Sequence[int] | None:
    """The library's PostgreSQL append (one pipelined transaction, through the write hooks),
    without the decorator that retries it on a lost connection."""
    append = PostgresApplicationRecorder.insert_events.__wrapped__
    positions: Sequence[int] | None = append(recorder, stored_events, **kwargs)
    return positions


def transcoder_default(transcoder: JSONTranscoder) -> Callable[[Any], Any]:
    """What the transcoder writes for a value JSON has no form of (a datetime, a UUID...)."""
    return transcoder._encode_obj


def registered_handler(view: object, event_class: type) -> Callable[..., None] | None:
    """The function `view.process_event` (a `singledispatchmethod` defined on the view's own
    class) runs for `event_class`; None when that is the default one."""
    getattr(view, "process_event")  # noqa: B009 (completes deferred registrations)
    dispatcher = vars(type(view))["process_event"].dispatcher
    handle: Callable[..., None] = dispatcher.dispatch(event_class)
    return None if handle is dispatcher.dispatch(object) else handle


class EventDecoder:
    """Decodes stored events as `mapper.to_domain_event` does, in about half the time.

    The state goes straight to the JSON transcoder's C scanner (with its object hook,
    so datetimes, UUIDs and decimals come back as the mapper makes them), without the
    wrappers of `json.loads`; the event class, its originator id conversion and its
    version are looked up once per topic. Old versions are upcast with the class's
    `upcast_vN_vN+1` methods, as the mapper does. A mapper with a cipher, a compressor
    or another transcoder is simply called.
    """

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        transcoder = mapper.transcoder
        self.scan: Callable[[str, int], tuple[Any, int]] | None = None
        if type(transcoder) is JSONTranscoder and mapper.cipher is None and mapper.compressor is None:
            self.scan = transcoder.decoder.scan_once  # type: ignore[attr-defined]
        self._classes: dict[tuple[str, type], tuple[type, Callable[[Any], Any], int]] = {}

    def decode(self, stored: StoredEvent) -> Any:
        if self.scan is None:
            return self.mapper.to_domain_event(stored)
        return self.decode_row(stored.topic, stored.originator_id, stored.originator_version, stored.state)

    def decode_row(self, topic: str, originator_id: Any, originator_version: int, state_bytes: bytes) -> Any:
        """`decode` of a stored event given as its fields."""
        if self.scan is None:
            return self.mapper.to_domain_event(
                StoredEvent(originator_id, originator_version, topic, state_bytes)
            )
        key = (topic, type(originator_id))
        known = self._classes.get(key)
        if known is None:
            cls = resolve_topic(topic)
            convert = find_id_convertor(cls, cast("Hashable", key[1]))
            known = self._classes[key] = (cls, convert, getattr(cls, "class_version", 1))
        cls, convert, class_version = known
        state: dict[str, Any] = self.scan(state_bytes.decode(), 0)[0]
        state["originator_id"] = convert(originator_id)
        state["originator_version"] = originator_version
        version = state.pop("class_version", 1)
        while version < class_version:
            getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
            version += 1
        event: Any = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

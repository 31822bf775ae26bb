"""The library's private parts the ledger uses (`ledger.library`) still behave as the library
itself does: an upgrade that changes one of them fails here, not silently in production."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import textwrap
import typing
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import library
from ledger.application import LedgerApplication
from ledger.commit import encode_plain_state
from ledger.library import EventDecoder, registered_handler
from ledger.store import UNNEST_FROM
from projections.runner import VIEWS
from projections.schema import metadata
from tests.integration.test_store_integrity import scenario
from tests.support import holding, onboard

pytestmark = pytest.mark.integration


def test_the_installed_library_is_the_version_ledger_library_was_checked_against() -> None:
    assert importlib.metadata.version("eventsourcing") == library.LIBRARY_VERSION


def test_the_decoder_makes_the_events_the_mappers_makes(app: LedgerApplication) -> None:
    scenario(app)
    onboard(app, "carol")
    holding(app, "TOLL-JKT-01", "carol", 7)
    notifications = app.recorder.select_notifications(start=None, limit=10_000)
    decoder = EventDecoder(app.mapper)
    assert decoder.scan is not None  # the fast path, not the mapper called through

    for n in notifications:
        stored = StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
        ours = decoder.decode_row(n.topic, n.originator_id, n.originator_version, n.state)
        theirs = app.mapper.to_domain_event(stored)
        assert type(ours) is type(theirs)
        assert vars(ours) == vars(theirs)


def _declared_handlers(view_class: type) -> dict[type, int]:
    """Event class -> line of each `@process_event.register` function in the view's source."""
    module = inspect.getmodule(view_class)
    source, first = inspect.getsourcelines(view_class)
    tree = ast.parse(textwrap.dedent("".join(source)))
    found: dict[type, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            ast.unparse(d) == "process_event.register" for d in node.decorator_list
        ):
            annotation = node.args.args[1].annotation
            assert annotation is not None
            declared = eval(ast.unparse(annotation), vars(module))
            for event_class in typing.get_args(declared) or (declared,):  # a union: each member
                found[event_class] = node.lineno + first - 1
    return found


@pytest.mark.parametrize("factory", VIEWS, ids=lambda f: f.__name__)
def test_the_dispatcher_lookup_finds_each_handler_a_view_registers(factory: Any) -> None:
    view = factory(dict(metadata.tables))
    declared = _declared_handlers(type(view))
    assert declared

    for event_class, line in declared.items():
        handler = registered_handler(view, event_class)
        assert handler is not None, event_class
        assert inspect.getsourcelines(handler)[1] <= line <= inspect.getsourcelines(handler)[1] + 3
    assert registered_handler(view, object) is None
    assert registered_handler(view, type("NotAnEvent", (), {})) is None


def test_the_write_hooks_get_the_appends_keyword_arguments_unchanged(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = app.recorder
    postgres = isinstance(recorder, PostgresApplicationRecorder)
    hooks = library.POSTGRES_WRITE_HOOKS if postgres else (library.SQLITE_WRITE_HOOK,)
    seen: list[tuple[str, Any]] = []
    for name in hooks:
        original = getattr(recorder, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            seen.append((_name, kwargs.get("commit_info")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(recorder, name, spy)
    events = [StoredEvent(uuid4(), 1, "tests:Raw", b"{}") for _ in range(UNNEST_FROM)]
    info: dict[str, Any] = {}

    if postgres:
        positions = library.insert_without_retry(cast(Any, recorder), events, commit_info=info)
    else:
        positions = recorder.insert_events(events, commit_info=info)

    assert positions is not None and len(positions) == len(events)
    assert [name for name, _ in seen] == list(hooks)
    assert all(passed is info for _, passed in seen)
    assert "prev_position" in info


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.integers(2**64, 2**80)  # beyond orjson: through the transcoder
    | st.text()
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.dictionaries(st.text(max_size=8), plain, max_size=5), offset=st.integers(0, 10**6))
def test_plain_states_are_written_as_the_transcoder_writes_them(
    sqlite_app: LedgerApplication, state: dict[str, Any], offset: int
) -> None:
    state["at"] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    assert encode_plain_state(sqlite_app.mapper, state) == sqlite_app.mapper.transcoder.encode(state)

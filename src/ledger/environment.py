"""The event store library's settings belong to the ledger, not to the process environment.

`eventsourcing` reads its settings from the process environment, each under its own
name and under the application's prefix (`LEDGER_POSTGRES_SCHEMA` wins over
`POSTGRES_SCHEMA`, and either over what the ledger passes in). One variable could so
switch the write path to the library's `es_insert_events` (no hash links, no
idempotency records, no outbox entries, no table lock: readers may skip events
committed out of order), move the store to another schema, or turn a cipher on.

The ledger therefore builds the library's environment from its own configuration
alone (`LedgerApplication.construct_env`), and a process whose environment sets a
setting of the write or read path to another value than the ledger's refuses to start,
naming the variable. A few connection-tuning settings that change no path are passed
through. Unknown `LEDGER_*` variables are reported, so that a typo does not silently
leave a default in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventsourcing.application import Application
from eventsourcing.utils import Environment, strtobool

from ledger.errors import ConfigurationError

PREFIX = "LEDGER_"

# Settings of the write or read path, with the library's default where the ledger passes none
# ("" = unset). A process environment may only repeat the ledger's value.
PINNED: dict[str, str] = {
    "PERSISTENCE_MODULE": "",
    "INFRASTRUCTURE_FACTORY": "",
    "FACTORY_TOPIC": "",
    "APPLICATION_RECORDER_TOPIC": "",
    "TRACKING_RECORDER_TOPIC": "",
    "PROCESS_RECORDER_TOPIC": "",
    "MAPPER_TOPIC": "",
    "TRANSCODER_TOPIC": "",
    "CIPHER_TOPIC": "",
    "CIPHER_KEY": "",
    "COMPRESSOR_TOPIC": "",
    "IS_SNAPSHOTTING_ENABLED": "n",
    "CREATE_TABLE": "y",
    "ORIGINATOR_ID_TYPE": "uuid",
    "SINGLE_ROW_TRACKING": "t",
    "AGGREGATE_CACHE_MAXSIZE": "",
    "AGGREGATE_CACHE_FASTFORWARD": "y",
    "AGGREGATE_CACHE_FASTFORWARD_SKIPPING": "n",
    "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    "POSTGRES_SCHEMA": "",
    "POSTGRES_LOCK_TIMEOUT": "0",
    "POSTGRES_POOL_SIZE": "",
    "SQLITE_DBNAME": "",
    "SQLITE_LOCK_TIMEOUT": "",
}
BOOLEANS = frozenset(
    {
        "IS_SNAPSHOTTING_ENABLED",
        "CREATE_TABLE",
        "SINGLE_ROW_TRACKING",
        "AGGREGATE_CACHE_FASTFORWARD",
        "AGGREGATE_CACHE_FASTFORWARD_SKIPPING",
        "DEEPCOPY_FROM_AGGREGATE_CACHE",
        "POSTGRES_ENABLE_DB_FUNCTIONS",
    }
)
SECRETS = frozenset({"CIPHER_KEY"})  # never echoed in a message (nor is any connection setting)
# Where the store is: taken from LEDGER_DATABASE_URL. Under their bare names these are often
# set for other programs (the postgres container image reads POSTGRES_USER and
# POSTGRES_PASSWORD), so bare ones are reported as ignored; LEDGER_-prefixed ones are pinned.
CONNECTION = ("POSTGRES_DBNAME", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD",
              "POSTGRES_GET_PASSWORD_TOPIC")
# Connection tuning that changes neither path: passed through to the library.
PASSED_THROUGH = (
    "POSTGRES_CONNECT_TIMEOUT",
    "POSTGRES_CONN_MAX_AGE",
    "POSTGRES_PRE_PING",
    "POSTGRES_MAX_WAITING",
    "POSTGRES_MAX_OVERFLOW",
    "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
)


def _same(name: str, given: str, ours: str) -> bool:
    if name in BOOLEANS:
        try:
            return bool(strtobool(given or "n")) == bool(strtobool(ours or "n"))
        except ValueError:  # not a truth value at all: a conflict too
            return False
    return given.strip() == ours


def check_library_environment(environ: Mapping[str, str], ledger_env: Mapping[str, str]) -> list[str]:
    """Raises `ConfigurationError` naming every variable of `environ` that would set a pinned
    library setting to another value than `ledger_env` (the library environment the ledger
    built); returns a note for each variable it ignores."""
    conflicts, notes = [], []
    postgres = ledger_env.get("PERSISTENCE_MODULE", "").endswith("postgres")
    for name, default in PINNED.items():
        ours = ledger_env.get(name, default)
        for variable in (PREFIX + name, name):
            given = environ.get(variable)
            if given is not None and not _same(name, given, ours):
                shown = f"{ours!r}" if ours else "unset"
                value = "(secret)" if name in SECRETS else repr(given)
                conflicts.append(f"{variable}={value} (the ledger's value: {shown})")
    for name in CONNECTION if postgres else ():
        ours = ledger_env.get(name, "")
        given = environ.get(PREFIX + name)
        if given is not None and given != ours:
            conflicts.append(f"{PREFIX}{name} (the store's connection comes from LEDGER_DATABASE_URL)")
        if name in environ and environ[name] != ours:
            notes.append(f"{name} is ignored: the store's connection comes from LEDGER_DATABASE_URL")
    if conflicts:
        raise ConfigurationError(
            "refusing to start: the event store's settings are pinned by the ledger, and the "
            "environment sets " + "; ".join(conflicts) + ". Unset these variables."
        )
    return notes


def passed_through(environ: Mapping[str, str]) -> dict[str, str]:
    """The connection-tuning settings of `environ`, under the names the library reads."""
    return {
        variable: environ[variable]
        for name in PASSED_THROUGH
        for variable in (PREFIX + name, name)
        if variable in environ
    }


def library_variables() -> set[str]:
    """Every `LEDGER_`-prefixed name the library would read."""
    return {PREFIX + name for name in (*PINNED, *CONNECTION, *PASSED_THROUGH)}


def unknown_ledger_variables(environ: Iterable[str], known: Iterable[str]) -> list[str]:
    """The `LEDGER_*` names of `environ` that nothing reads (a typo keeps a default silently)."""
    expected = {name.upper() for name in known} | library_variables()
    return sorted(
        name for name in environ if name.upper().startswith(PREFIX) and name.upper() not in expected
    )


def ledger_settings(app_cls: type[Application[Any]], env: Mapping[str, str] | None) -> dict[str, str]:
    """The library settings an application class gets from the ledger: its own, then `env`."""
    settings = dict(app_cls.env)
    if app_cls.is_snapshotting_enabled or app_cls.snapshotting_intervals:
        settings["IS_SNAPSHOTTING_ENABLED"] = "y"
    settings.update(env or {})
    return settings


def library_environment(
    app_cls: type[Application[Any]], name: str, env: Mapping[str, str] | None, environ: Mapping[str, str]
) -> Environment:
    """What `Application.construct_env` builds, without the process environment: the class's
    settings and the ledger's, checked against `environ` (see the module's docstring)."""
    settings = ledger_settings(app_cls, env)
    check_library_environment(environ, settings)
    return Environment(name, {**passed_through(environ), **settings})

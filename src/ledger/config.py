"""Configuration of the ledger (SPEC section 3), read from the environment or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/ledger.sqlite3"
    admin_database_url: str | None = None  # the owner role on PostgreSQL: init, migrations, replay
    read_database_url: str | None = None
    redis_url: str | None = None
    chain_rpc_url: str | None = None
    chain_confirmations: int = 12
    chain_agent_key: str | None = None
    audit_key_file: str | None = None  # Ed25519 signing key of tree heads (PEM file); never in the database
    audit_key: str | None = None  # the same key as PEM text
    max_body_bytes: int = 1_048_576  # a larger request body gets 413 payload_too_large
    max_json_depth: int = 32  # JSON nested deeper gets 422 validation_error
    audit_sign_seconds: float = 60.0  # how often the worker signs a new tree head (when the log grew)
    anchor_address: str | None = None  # the anchor contract of signed heads (`ledger audit anchor deploy`)
    anchor_from_block: int = 0  # the block it was deployed in: anchors are read from there

    @property
    def read_url(self) -> str:
        return self.read_database_url or self.database_url


# LEDGER_ variables read elsewhere than `Settings` (tests, benchmarks, the contracts' path).
OTHER_VARIABLES = (
    "LEDGER_CONTRACTS_DIR",
    "LEDGER_TEST_DATABASE_URL",
    "LEDGER_TEST_REDIS_URL",
    "LEDGER_REQUIRE_SERVICES",
    "LEDGER_BENCH_DATABASE_URL",
)


def known_variables() -> list[str]:
    """Every `LEDGER_*` variable something of the ledger reads."""
    return [f"LEDGER_{name.upper()}" for name in Settings.model_fields] + list(OTHER_VARIABLES)


def store_env(url: str, *, create_tables: bool = True) -> dict[str, str]:
    """The `eventsourcing` environment for an event store URL (`sqlite:///...` or `postgresql://...`).

    A PostgreSQL URL may name a schema with `?schema=NAME` (tests use one schema each).
    `create_tables=False` for a role that may not create or alter them (the runtime role).
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)
        if not path or path == ":memory:":
            name = "file:ledger?mode=memory&cache=shared"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            name = path
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": name,
            "APPLICATION_RECORDER_TOPIC": "ledger.store:LedgerSQLiteRecorder",
            "CREATE_TABLE": "y" if create_tables else "n",
        }
    if parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = parse_qs(parsed.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
            "POSTGRES_POOL_SIZE": query.get("pool_size", ["8"])[0],
            "POSTGRES_LOCK_TIMEOUT": "10",
            # Seconds to wait for a pooled connection (the library's default is 30, and it tries
            # 10 times): while the store is away a command answers 503 in about 20 s, not 5 min.
            "POSTGRES_CONNECT_TIMEOUT": "2",
            "APPLICATION_RECORDER_TOPIC": "ledger.store:LedgerPostgresRecorder",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            "CREATE_TABLE": "y" if create_tables else "n",
        }
        return env
    msg = f"unsupported database URL scheme {parsed.scheme!r}: use sqlite:///PATH or postgresql://..."
    raise ValueError(msg)

"""Reads the configuration and wires the ledger; the only place that does."""

from __future__ import annotations

from sqlalchemy import Engine

from adapters.api.common import Services
from adapters.api.keys import KeyStore
from adapters.api.metrics import Metrics
from ledger.application import LedgerApplication
from ledger.config import Settings, store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for


def settings() -> Settings:
    return Settings()


def build_application(config: Settings | None = None) -> LedgerApplication:
    """The ledger on the configured event store (tables are created if missing)."""
    config = config or settings()
    return LedgerApplication(store_env(config.database_url))


def read_engine(config: Settings | None = None, migrate: bool = True) -> Engine:
    """The read-model database, brought to the newest schema by its migrations."""
    config = config or settings()
    engine = engine_for(config.read_url)
    if migrate:
        upgrade(engine)
    return engine


def build_runner(app: LedgerApplication, config: Settings | None = None) -> ProjectionRunner:
    return ProjectionRunner(app, read_engine(config))


def build_services(config: Settings | None = None) -> Services:
    """Everything the HTTP API needs, on the configured stores."""
    config = config or settings()
    ledger = build_application(config)
    runner = build_runner(ledger, config)
    return Services(ledger, runner, KeyStore(runner.engine), Metrics())

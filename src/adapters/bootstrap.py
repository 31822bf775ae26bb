"""Reads the configuration and wires the ledger; the only place that does."""

from __future__ import annotations

from ledger.application import LedgerApplication
from ledger.config import Settings, store_env


def settings() -> Settings:
    return Settings()


def build_application(config: Settings | None = None) -> LedgerApplication:
    """The ledger on the configured event store (tables are created if missing)."""
    config = config or settings()
    return LedgerApplication(store_env(config.database_url))

"""API keys: made by `ledger keys create`, shown once, stored hashed, each with one role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, select

ROLES = ("admin", "auditor", "investor")
operational = MetaData()

api_keys = Table(
    "api_keys",
    operational,
    Column("key_id", String(16), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("investor_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and for investors the one investor they act for."""

    key_id: str
    role: str
    investor_id: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Keys in the read database; a verified key is remembered for a minute to spare the lookup."""

    def __init__(self, engine: Engine, remember_seconds: float = 60.0) -> None:
        self.engine = engine
        self.remember_seconds = remember_seconds
        self._verified: dict[str, tuple[float, Principal]] = {}

    def create(self, role: str, investor_id: str | None = None) -> str:
        """Makes a key and returns it; only its hash is kept."""
        if role not in ROLES:
            msg = f"role must be one of {', '.join(ROLES)}"
            raise ValueError(msg)
        if (role == "investor") != (investor_id is not None):
            msg = "an investor key needs --investor-id, and only an investor key takes one"
            raise ValueError(msg)
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.insert(),
                {
                    "key_id": key_id,
                    "secret_hash": _digest(secret),
                    "role": role,
                    "investor_id": investor_id,
                    "created_at": datetime.now(tz=UTC),
                },
            )
        return f"lk_{key_id}_{secret}"

    def remembered(self, token: str) -> Principal | None:
        """The principal of a key verified in the last minute, without touching the database."""
        known = self._verified.get(token)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        return None

    def authenticate(self, token: str) -> Principal | None:
        known = self.remembered(token)
        if known is not None:
            return known
        principal = self._lookup(token)
        if principal is not None:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = (time.monotonic() + self.remember_seconds, principal)
        return principal

    def _lookup(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "lk" or len(parts[1]) != 16:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == parts[1])).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(parts[2])):
            return None
        return Principal(row.key_id, row.role, row.investor_id)

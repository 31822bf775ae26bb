"""The ApiKey aggregate: the record of an API key's life (made, rotated, revoked).

The key itself (its secret's hash, the lookup for authentication) lives in the read
database's `api_keys` table; these events say who made, rotated and revoked which key,
with which authority and expiry. They never carry the secret or its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.values import stream_id
from ledger.errors import InvalidStateError


@dataclass(frozen=True)
class ApiKeyTerms:
    """What a key is: its public id, its role, the investor it acts for, when it expires."""

    key_id: str
    role: str
    investor_id: str | None
    expires_at: datetime | None


class ApiKey(Aggregate):
    """One API key of the HTTP API: its role, the investor it acts for, its expiry."""

    class Created(Aggregate.Created):
        key_id: str
        role: str
        investor_id: str | None
        expires_at: datetime | None

    class Rotated(Aggregate.Event):
        """A new secret was issued; the previous one stays valid until `previous_valid_until`."""

        previous_valid_until: datetime

        def apply(self, key: ApiKey) -> None:
            key.rotations += 1

    class Revoked(Aggregate.Event):
        """The key is refused from now on, with every secret it had."""

        def apply(self, key: ApiKey) -> None:
            key.revoked = True

    def __init__(self, key_id: str, role: str, investor_id: str | None, expires_at: datetime | None) -> None:
        self.key_id = key_id
        self.role = role
        self.investor_id = investor_id
        self.expires_at = expires_at
        self.revoked = False
        self.rotations = 0

    @staticmethod
    def create_id(key_id: str) -> UUID:
        return stream_id("api-key", key_id)

    @classmethod
    def create(cls, terms: ApiKeyTerms) -> ApiKey:
        return cls._create(
            cls.Created,
            id=cls.create_id(terms.key_id),
            key_id=terms.key_id,
            role=terms.role,
            investor_id=terms.investor_id,
            expires_at=terms.expires_at,
        )

    def check_active(self) -> None:
        if self.revoked:
            raise InvalidStateError(f"key {self.key_id} is revoked")

    def rotate(self, previous_valid_until: datetime) -> None:
        self.check_active()
        self.trigger_event(self.Rotated, previous_valid_until=previous_valid_until)

    def revoke(self) -> None:
        self.check_active()
        self.trigger_event(self.Revoked)

"""API keys: made by `ledger keys create` or `POST /v1/keys`, shown once, stored hashed, each
with one role; listed, rotated and revoked by admins; recorded as `ApiKey` events.

A key is `lk_<key id>_<secret>`. The key id is public (it is logged and recorded as the
actor of the commands the key sends); the secret is never stored, logged or recorded,
only its SHA-256. Rotation issues a new secret for the same key id (so the key's actor and
idempotency scope carry over); the previous secret stays valid for a grace period
(`ROTATION_GRACE` unless given), then is refused.

Revocation reaches every API process within `MAX_REMEMBER_SECONDS`: a process remembers a
verified key for `REMEMBER_SECONDS` only (then reads the table again), and never past the
key's expiry or the end of a rotated secret's grace; the process that revokes forgets the
key at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.domain import values
from ledger.domain.apikey import ApiKeyTerms
from ledger.errors import InvalidStateError, NotFoundError, ValidationError

logger = logging.getLogger(__name__)
ROLES = ("admin", "auditor", "investor")
REMEMBER_SECONDS = 0.5
MAX_REMEMBER_SECONDS = 1.0  # SPEC 5: a revoked or expired key is refused by every process within 1 s
LAST_USED_EVERY = timedelta(minutes=1)  # `last_used_at` is written at most this often per process
ROTATION_GRACE = timedelta(hours=1)
MAX_GRACE = timedelta(days=7)
MAX_EXPIRES_IN = timedelta(days=3660)
operational = MetaData()

api_keys = Table(
    "api_keys",
    operational,
    Column("key_id", String(16), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("investor_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("previous_secret_hash", String(64)),
    Column("previous_valid_until", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and for investors the one investor they act for."""

    key_id: str
    role: str
    investor_id: str | None


@dataclass(frozen=True)
class KeyInfo:
    """A key as `keys list` and `GET /v1/keys` show it: never its secret."""

    key_id: str
    role: str
    investor_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_valid_until: datetime | None  # the end of a rotated-out secret's grace


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def session_proof(secret_hash: str, key_id: str, issued: str) -> str:
    """What a console session cookie carries instead of the key: an HMAC keyed by the stored
    hash of the secret it was signed in with, over the key id and the sign-in time. It is no
    API key (the secret cannot be had from it) and cannot be made without the stored hash."""
    message = f"ledger-console-session-v1\n{key_id}\n{issued}".encode()
    return hmac.new(secret_hash.encode(), message, hashlib.sha256).hexdigest()


def secret_hash_of(token: str) -> str:
    """The stored hash of an API key's secret (`lk_<key id>_<secret>`)."""
    return _digest(token.split("_", 2)[-1])


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def key_terms(role: Any, investor_id: Any, expires_at: datetime | None) -> ApiKeyTerms:
    """The terms of a new key, checked: a known role, an investor id (SPEC 4) for investor keys only."""
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}")
    if (role == "investor") != (investor_id is not None):
        raise ValidationError("an investor key needs an investor id, and only an investor key takes one")
    clean_investor = None if investor_id is None else values.investor_id(investor_id)
    return ApiKeyTerms(secrets.token_hex(8), role, clean_investor, expires_at)


class KeyStore:
    """Keys in the read database, with a short memory of verified keys to spare lookups."""

    def __init__(
        self,
        engine: Engine,
        remember_seconds: float = REMEMBER_SECONDS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not 0 <= remember_seconds <= MAX_REMEMBER_SECONDS:
            msg = f"a verified key may be remembered for at most {MAX_REMEMBER_SECONDS} s"
            raise ValueError(msg)
        self.engine = engine
        self.remember_seconds = remember_seconds
        self.clock = clock
        # token -> (monotonic time to look again, wall-clock end of validity or None, principal)
        self._verified: dict[str, tuple[float, datetime | None, Principal]] = {}
        self._last_used: dict[str, datetime] = {}

    # ----- management -----

    def create(self, role: str, investor_id: str | None = None, expires_at: datetime | None = None) -> str:
        """Makes a key (not recorded as an event: see `KeyAdmin`) and returns it."""
        terms = key_terms(role, investor_id, expires_at)
        return self.insert(terms)

    def insert(self, terms: ApiKeyTerms) -> str:
        """Stores a new key of these terms; returns the key, whose secret only its hash keeps."""
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.insert(),
                {
                    "key_id": terms.key_id,
                    "secret_hash": _digest(secret),
                    "role": terms.role,
                    "investor_id": terms.investor_id,
                    "created_at": self.clock(),
                    "expires_at": terms.expires_at,
                },
            )
        return f"lk_{terms.key_id}_{secret}"

    def get(self, key_id: str) -> KeyInfo:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise NotFoundError(f"key {key_id} not found")
        return _info(row)

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
            return [_info(row) for row in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        """Refuses the key from now on (revoking it again keeps the first time)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
        self.forget(key_id)
        return self.get(key_id)

    def rotate(self, key_id: str, previous_valid_until: datetime) -> str:
        """A new secret for the key; the current one stays valid until `previous_valid_until`."""
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:  # one statement: the right side reads the row as it was
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(
                    secret_hash=_digest(secret),
                    previous_secret_hash=api_keys.c.secret_hash,
                    previous_valid_until=previous_valid_until,
                )
            ).rowcount
        if changed != 1:
            raise NotFoundError(f"key {key_id} not found")
        self.forget(key_id)
        return f"lk_{key_id}_{secret}"

    def forget(self, key_id: str) -> None:
        """Drops this process's memory of the key's secrets (it is looked up again)."""
        for token, (_, _, known) in list(self._verified.items()):  # a copy: other threads add keys
            if known.key_id == key_id:
                self._verified.pop(token, None)

    # ----- authentication -----

    def remembered(self, token: str) -> Principal | None:
        """The principal of a key verified in the last `remember_seconds` and still within its
        validity, without touching the database."""
        known = self._verified.get(token)
        if known is None or known[0] <= time.monotonic():
            return None
        if known[1] is not None and known[1] <= self.clock():
            return None
        return known[2]

    def authenticate(self, token: str) -> Principal | None:
        """The principal of an API key (`lk_<key id>_<secret>`), if the key is valid now."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "lk" or len(parts[1]) != 16:
            return None
        digest = _digest(parts[2])
        return self._remembering(token, parts[1], lambda stored: hmac.compare_digest(stored, digest))

    def authenticate_session(self, key_id: str, issued: str, proof: str) -> Principal | None:
        """The principal of a console session (`session_proof`) signed in with a secret of this
        key, if that secret is still valid now: a session ends with its key's revocation, expiry
        or the end of a rotated-out secret's grace, within the same second as the key itself."""
        if len(key_id) != 16 or len(proof) != 64:
            return None
        return self._remembering(
            f"session:{key_id}:{issued}:{proof}",
            key_id,
            lambda stored: hmac.compare_digest(session_proof(stored, key_id, issued), proof),
        )

    def _remembering(self, token: str, key_id: str, matches: Callable[[str], bool]) -> Principal | None:
        known = self.remembered(token)
        if known is not None:
            return known
        found = self._lookup(key_id, matches)
        if found is None:
            self._verified.pop(token, None)
            return None
        principal, valid_until = found
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (time.monotonic() + self.remember_seconds, valid_until, principal)
        return principal

    def _lookup(
        self, key_id: str, matches: Callable[[str], bool]
    ) -> tuple[Principal, datetime | None] | None:
        """The key's principal and the end of the matching secret's validity, if the key is valid
        now (`matches` tells whether a stored secret hash is the one presented)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None or row.revoked_at is not None:
            return None
        now = self.clock()
        ends = [_utc(row.expires_at)]
        if not matches(row.secret_hash):
            grace = _utc(row.previous_valid_until)
            if grace is None or not row.previous_secret_hash or not matches(row.previous_secret_hash):
                return None
            ends.append(grace)
        valid_until = min((end for end in ends if end is not None), default=None)
        if valid_until is not None and valid_until <= now:
            return None
        self._note_use(row.key_id, _utc(row.last_used_at), now)
        return Principal(row.key_id, row.role, row.investor_id), valid_until

    def _note_use(self, key_id: str, last_used: datetime | None, now: datetime) -> None:
        noted = self._last_used.get(key_id) or last_used
        if noted is not None and now - noted < LAST_USED_EVERY:
            return
        self._last_used[key_id] = now
        try:
            with self.engine.begin() as conn:
                conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=now))
        except SQLAlchemyError:  # a busy database: the time of last use is a hint, never a refusal
            logger.warning("could not note the use of key %s", key_id, exc_info=True)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        row.key_id,
        row.role,
        row.investor_id,
        _utc(row.created_at) or utc_now(),
        _utc(row.last_used_at),
        _utc(row.expires_at),
        _utc(row.revoked_at),
        _utc(row.previous_valid_until),
    )


DURATION = re.compile(r"^([0-9]{1,10})([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str, field: str, *, zero: bool = False) -> timedelta:
    """`90`, `90s`, `15m`, `12h` or `30d` (`0` only where `zero` allows it)."""
    match = DURATION.match(text.strip())
    if match is None or (not zero and int(match.group(1)) == 0):
        raise ValidationError(f"{field} must be seconds (90, 90s), minutes (15m), hours (12h) or days (30d)")
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


@dataclass(frozen=True)
class Issued:
    """A key as made or rotated: its record, the key itself (None when the request was a replay:
    a secret is shown once and kept nowhere), and the position of the event that records it."""

    info: KeyInfo
    key: str | None
    position: int


class KeyAdmin:
    """Key management as admins do it: each change to the key table is recorded as an `ApiKey`
    event carrying its actor (the ledger's `acting_as`).

    A new or rotated key is recorded first, then stored: a key never works unrecorded. A
    revocation is stored first, then recorded: a key is shut out even while the event store
    is away (revoking again records it then)."""

    def __init__(self, ledger: LedgerApplication, store: KeyStore) -> None:
        self.ledger = ledger
        self.store = store

    def create(
        self,
        role: Any,
        investor_id: Any = None,
        expires_in: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> Issued:
        if expires_in is not None and not timedelta(seconds=1) <= expires_in <= MAX_EXPIRES_IN:
            raise ValidationError(f"expires_in must be between 1 s and {MAX_EXPIRES_IN.days} days")
        expires_at = None if expires_in is None else self.store.clock() + expires_in
        terms = key_terms(role, investor_id, expires_at)
        request = {"role": role, "investor_id": investor_id, "expires_in": _seconds(expires_in)}
        outcome = self.ledger.record_key_created(terms, request, idempotency_key)
        if outcome.result["key_id"] != terms.key_id:  # a replay: the first request's key
            return Issued(self.store.get(outcome.result["key_id"]), None, outcome.position)
        key = self.store.insert(terms)
        return Issued(self.store.get(terms.key_id), key, outcome.position)

    def rotate(
        self, key_id: str, grace: timedelta | None = None, idempotency_key: str | None = None
    ) -> Issued:
        grace = ROTATION_GRACE if grace is None else grace
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise ValidationError(f"the grace period must be between 0 and {MAX_GRACE.days} days")
        info = self.store.get(key_id)
        if info.revoked_at is not None:
            raise InvalidStateError(f"key {key_id} is revoked")
        previous_valid_until = self.store.clock() + grace
        outcome = self.ledger.record_key_rotated(
            _terms(info), previous_valid_until, {"grace": _seconds(grace)}, idempotency_key
        )
        if outcome.result.get("previous_valid_until") != previous_valid_until.isoformat():  # a replay
            return Issued(self.store.get(key_id), None, outcome.position)
        key = self.store.rotate(key_id, previous_valid_until)
        return Issued(self.store.get(key_id), key, outcome.position)

    def revoke(self, key_id: str, idempotency_key: str | None = None) -> tuple[KeyInfo, Outcome]:
        info = self.store.get(key_id)
        revoked = self.store.revoke(key_id)
        return revoked, self.ledger.record_key_revoked(_terms(info), idempotency_key)


def _terms(info: KeyInfo) -> ApiKeyTerms:
    return ApiKeyTerms(info.key_id, info.role, info.investor_id, info.expires_at)


def _seconds(span: timedelta | None) -> int | None:
    return None if span is None else int(span.total_seconds())

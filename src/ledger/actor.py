"""Who issued a command: the actor every command event records, and the scope of idempotency keys.

An adapter says who is acting by running the application's methods inside `acting_as`
(a context variable, so it reaches the application through threads started with a copy
of the context, as FastAPI's thread pool does, and never through other threads):

- the HTTP API: the caller's API key (`key:<key id>`, its role and investor id) and the
  request id;
- the CLI: `cli:<operator>` (`LEDGER_OPERATOR`, else the OS user);
- background components: `system:worker`, `system:mirror`, `system:reconciliation`.

The application copies the actor onto the command; the committer writes it into each
event's stored state under `actor`, so it is covered by the hash chain. Events stored
before actors were recorded (or by code that acted as nobody) read as `unknown`.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

STATE_KEY = "actor"


@dataclass(frozen=True)
class Actor:
    """Who acted (`principal`), with which authority, in which request. Never a secret."""

    principal: str  # "key:<key id>" | "cli:<operator>" | "system:<component>" | "unknown"
    role: str | None = None
    investor_id: str | None = None
    request_id: str | None = None

    @property
    def key_id(self) -> str | None:
        return self.principal[4:] if self.principal.startswith("key:") else None

    def as_state(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Any) -> Actor:
        """The actor a stored event recorded; `unknown` for an event from before actors (upcast)."""
        if not isinstance(state, dict) or not isinstance(state.get("principal"), str):
            return UNKNOWN
        return cls(
            state["principal"],
            _optional(state.get("role")),
            _optional(state.get("investor_id")),
            _optional(state.get("request_id")),
        )

    def scope(self, idempotency_key: str) -> str:
        """The idempotency key as stored: a caller's key is qualified by who sent it, so the same
        key from two callers is two commands. Keys made by system components (`chain-operation:…`)
        name what they record already and are kept as they are."""
        if self.principal.startswith("system:") or self.principal == UNKNOWN.principal:
            return idempotency_key
        return f"{self.principal}|{idempotency_key}"


def _optional(value: Any) -> str | None:
    return value if isinstance(value, str) else None


UNKNOWN = Actor("unknown")
_current: ContextVar[Actor | None] = ContextVar("ledger_actor", default=None)


def current_actor() -> Actor | None:
    return _current.get()


def set_actor(actor: Actor) -> None:
    """Sets the actor for the rest of the current context (an HTTP request's own task)."""
    _current.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def system(component: str) -> Actor:
    return Actor(f"system:{component}")


def operator() -> Actor:
    """The person at the CLI: `LEDGER_OPERATOR` if set, else the OS user."""
    name = os.environ.get("LEDGER_OPERATOR", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    return Actor(f"cli:{name[:64]}")

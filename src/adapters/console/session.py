"""Console sessions: an auditor's or admin's API key exchanged for a cookie, checked on every request.

The cookie holds the key id, the sign-in time and `session_proof`: an HMAC keyed by the stored
hash of the secret that signed in. It is no API key (the secret cannot be had from it), every
request checks it against the key table through the key store (so revocation, expiry and the
end of a rotated-out secret's grace end the session in every process within a second), and it
needs no server-side state or shared secret, so any number of `serve` workers accept it. A
session also ends `SESSION_SECONDS` after sign-in. Signing out clears the cookie.

Forms (sign-in, sign-out) carry a token that must equal a second cookie's (double submit), and a
request with an `Origin` must come from the console's own origin; the session cookie is
`SameSite=Strict`, so another site's page never sends it.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapters.api.common import services
from adapters.api.keys import Principal, secret_hash_of, session_proof

SESSION_COOKIE = "ledger_console"
CSRF_COOKIE = "ledger_console_csrf"
SESSION_SECONDS = 8 * 3600
ROLES = ("admin", "auditor")
_COOKIE = re.compile(r"^([0-9a-f]{16})\.([0-9]{1,12})\.([0-9a-f]{64})$")
_MAX_FORM_BYTES = 4096


class SignInRequiredError(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class FormRefusedError(Exception):
    """A form post without the right token or from another origin."""


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str  # the token this browser's forms carry


async def current(request: Request) -> Session:
    """The signed-in auditor or admin, checked against the key store now; else `SignInRequiredError`."""
    found = _COOKIE.match(request.cookies.get(SESSION_COOKIE, ""))
    if found is None:
        raise SignInRequiredError
    key_id, issued, proof = found.groups()
    now = time.time()
    if not now - SESSION_SECONDS < int(issued) <= now + 60:
        raise SignInRequiredError
    keys = services(request).keys
    principal = await run_in_threadpool(keys.authenticate_session, key_id, issued, proof)
    if principal is None or principal.role not in ROLES:
        raise SignInRequiredError
    request.state.key_id = principal.key_id  # the request log names the key, as for the API
    return Session(principal, csrf_token(request))


async def key_principal(request: Request, token: str) -> Principal | None:
    """Whose key this is, if it is valid now (the caller checks the role)."""
    keys = services(request).keys
    return await run_in_threadpool(keys.authenticate, token.strip())


def start(response: Response, request: Request, principal: Principal, token: str) -> None:
    issued = str(int(time.time()))
    proof = session_proof(secret_hash_of(token.strip()), principal.key_id, issued)
    response.set_cookie(
        SESSION_COOKIE,
        f"{principal.key_id}.{issued}.{proof}",
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """This browser's form token (a new one if it has none; `keep_csrf` sets the cookie)."""
    known: str = request.cookies.get(CSRF_COOKIE, "")
    if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", known) is None:
        known = getattr(request.state, "new_csrf", "") or secrets.token_urlsafe(32)
        request.state.new_csrf = known
    return known


def keep_csrf(response: Response, request: Request) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE, token, path="/console", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )


async def form(request: Request) -> dict[str, str]:
    """A posted form's fields, once its token and origin are checked; `FormRefusedError` otherwise."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise FormRefusedError
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise FormRefusedError
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise FormRefusedError from None
    fields = {name: values[0] for name, values in parsed.items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), fields.get("csrf", "").encode()):
        raise FormRefusedError
    return fields

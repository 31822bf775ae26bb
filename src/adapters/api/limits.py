"""Limits on request bodies, checked before anything parses them (SPEC 5, amendments: limits).

A JSON body nested deep enough overflows the C stack of the JSON parser once a library has
raised the recursion limit (py_ecc, imported through the chain libraries, sets it to 100,000),
killing the process before authentication. So every request body is read here with a byte
limit (413 `payload_too_large`) and a JSON body's nesting depth is counted without recursion
(422 `validation_error`) before FastAPI sees it. Bodiless requests (GET, HEAD) pass untouched.
"""

from __future__ import annotations

import re
import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.api.common import problem

RECURSION_LIMIT = 1000  # Python's default: the parsers' own depth guards work again
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
# A JSON string (with its escapes), or an unterminated one up to the end: brackets inside
# strings do not nest. Possessive, so no input makes the scan backtrack (it stays linear).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def restore_recursion_limit() -> None:
    """Undoes a library's raised recursion limit; every process entry point calls it after its
    imports, so a deeply nested input fails with RecursionError instead of a segfault."""
    if sys.getrecursionlimit() > RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True if the JSON text nests arrays and objects deeper than `limit` (counted outside
    strings, iteratively; malformed text is left to the parser)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the usual case: too few brackets to nest that deep
    depth = 0
    for bracket in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if bracket in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class BodyLimits:
    """Pure ASGI middleware: a request body over `max_bytes` gets 413 `payload_too_large`, a
    JSON body nested deeper than `max_depth` 422 `validation_error`; the application then
    receives the body it would have received."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, 413, "payload_too_large", self._too_large)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, 413, "payload_too_large", self._too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _is_json(headers.get(b"content-type")) and json_depth_exceeds(body, self.max_depth):
            detail = f"body: JSON nested deeper than {self.max_depth} levels"
            await self._refuse(scope, receive, send, 422, "validation_error", detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @property
    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str
    ) -> None:
        response = problem(status, code, code.replace("_", " ").capitalize(), detail)
        if status == 413:
            response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def _is_json(content_type: bytes | None) -> bool:
    """JSON as FastAPI parses it (`application/json`, `...+json`); no content type counts too."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media.endswith((b"/json", b"+json"))

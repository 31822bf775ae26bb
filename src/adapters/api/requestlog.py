"""The request log: one JSON line on stderr per HTTP request, and the `X-Request-ID` of each.

A line has the time (RFC 3339 UTC), the request id, the caller's key id (never the key
itself: only the id the authentication stored in the request's state), the method, the
route's path template (not the path: ids in a path stay out of the log), the status, the
duration in microseconds and, for a command, the position of its last event. A caller's
`X-Request-ID` is kept if it is 1 to 128 printable ASCII characters, else replaced by a new
one; either way it is echoed in the response, recorded in the events the request makes
(`ledger.actor`) and written in the log line, so a problem+json answer (stable code and
message only) can be matched with the details logged under its id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from adapters.api.common import problem
from adapters.api.metrics import ASGIApp, Scope, route_template

logger = logging.getLogger(__name__)
HEADER = b"x-request-id"
VALID_ID = re.compile(r"[\x21-\x7e]{1,128}")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's `X-Request-ID` if it is valid, else a new one."""
    for name, value in headers:
        if name.lower() == HEADER:
            text = value.decode("latin-1")
            if VALID_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Plain ASGI middleware (no task per request): request id in, log line and header out.

    Lines are written by the event loop's thread only, one `write` each, so they never
    interleave; `stream` defaults to the process's stderr at the time of writing."""

    def __init__(self, app: ASGIApp, stream: Any = None) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope.get("headers", []))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Answered here (with its request id) rather than by the server's last resort: a
            # stable problem, the details in the log under the request id.
            state["error"] = type(error).__name__
            logger.error("request %s failed", request_id, exc_info=error)
            if status:
                raise  # the answer had begun: nothing else can be sent
            answer = problem(500, "internal_error", "internal error", "the request could not be completed")
            await answer(scope, receive, send_with_id)
        finally:
            line = {
                "time": datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "request_id": request_id,
                "key_id": state.get("key_id"),
                "method": scope["method"],
                "path": route_template(scope),
                "status": status,
                "duration_us": round((time.perf_counter() - started) * 1_000_000),
                "position": state.get("position"),
            }
            if state.get("error") is not None:
                line["error"] = state["error"]
            stream = self.stream or sys.stderr
            stream.write(json.dumps(line) + "\n")
            stream.flush()

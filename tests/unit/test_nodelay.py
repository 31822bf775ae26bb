"""The API's connections have Nagle's algorithm off, on the socket uvicorn binds for
`ledger serve --workers N` too (real sockets on the loopback interface)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.server import ServerState

from adapters.api.nodelay import NoDelayHTTPProtocol


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request is sent
    raise AssertionError


def _nodelay_after_connection_made(protocol_class: type[asyncio.Protocol]) -> tuple[int, int]:
    """TCP_NODELAY of a connection accepted on the socket uvicorn binds for its worker
    processes, before and after `protocol_class` took the connection."""
    config = uvicorn.Config(app=_app, host="127.0.0.1", port=0, http=protocol_class, log_level="warning")
    listener = config.bind_socket()
    listener.listen()  # as the worker's server does
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    before = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    async def take() -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol_class(config, ServerState(), {}),  # type: ignore[call-arg]
            accepted,
        )
        try:
            return int(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            transport.close()

    try:
        return before, asyncio.run(take())
    finally:
        client.close()
        listener.close()


def test_uvicorns_worker_socket_leaves_nagle_on() -> None:
    """Why the protocol is needed: asyncio does not set TCP_NODELAY on these connections."""
    assert _nodelay_after_connection_made(AutoHTTPProtocol) == (0, 0)


def test_the_api_protocol_sets_tcp_nodelay_on_each_connection() -> None:
    before, after = _nodelay_after_connection_made(NoDelayHTTPProtocol)
    assert before == 0
    assert after != 0

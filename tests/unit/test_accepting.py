"""The sockets `serve --workers N` workers listen on (`adapters.api.accepting`), on real sockets."""

from __future__ import annotations

import socket

import pytest
import uvicorn

from adapters.api.accepting import listening_socket, serve_workers


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_a_worker_socket_shares_its_port_and_is_tcp(host: str, family: socket.AddressFamily) -> None:
    first = listening_socket(host, 0, reuse_port=True)
    try:
        assert first.family == family
        assert first.proto == socket.IPPROTO_TCP  # so asyncio turns Nagle's algorithm off
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        first.listen()
        port = first.getsockname()[1]
        second = listening_socket(host, port, reuse_port=True)  # another worker's
        second.close()
        with pytest.raises(OSError):  # the supervisor's probe: the port is served
            listening_socket(host, port, reuse_port=False)
    finally:
        first.close()


def test_workers_on_a_port_already_served_do_not_start() -> None:
    taken = socket.create_server(("127.0.0.1", 0))  # another program's
    try:
        config = uvicorn.Config("adapters.bootstrap:build_api", port=taken.getsockname()[1], workers=2)
        with pytest.raises(SystemExit) as stopped:
            serve_workers(config)
        assert stopped.value.code == 3  # uvicorn's exit code for a failed start
    finally:
        taken.close()

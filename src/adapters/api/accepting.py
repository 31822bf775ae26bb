"""`serve --workers N`: each worker process listens on a socket of its own (SO_REUSEPORT).

uvicorn's worker processes share the one socket its supervisor binds, and each one's event
loop, woken when connections are waiting, accepts every queued connection before it looks
at anything else. A burst of new connections (a load balancer opening its keep-alive pool,
clients reconnecting after a restart) thus all went to whichever worker woke first:
measured, 16 connections opened at once landed 16/0 on two workers in 9 bursts of 12, and
the one worker served them on one core while the other stayed idle (POST /v1/transfers:
0.83 and 0.0 of a core). Accepting one connection per wake-up did not help (16/0 in 3 of
12). With a socket per worker bound with SO_REUSEPORT, the kernel spreads the connections
over the workers by a hash of their addresses, whichever worker is awake.

Linux lets only sockets of the same user share a port this way. Before the workers start,
the supervisor binds the address once without SO_REUSEPORT: a port already served (another
`ledger serve` left running, any other program) still fails the start at once, with
uvicorn's exit code for a failed start. A worker that cannot bind exits with that code too,
so the supervisor stops instead of starting it again and again.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to `host`:`port` (not yet listening: uvicorn starts it with its
    backlog). `proto` is TCP, so asyncio turns Nagle's algorithm off on its connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class OwnSocketProcess(multiprocess.Process):
    """A uvicorn worker process that serves a socket it binds itself, with SO_REUSEPORT."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover (in the worker)
        try:
            sock = listening_socket(self.config.host, self.config.port, reuse_port=True)
        except OSError as error:
            logger.error("the worker could not bind %s:%s: %s", self.config.host, self.config.port, error)
            sys.exit(STARTUP_FAILURE)
        super().target([sock])


@contextmanager
def _own_socket_processes() -> Iterator[None]:
    """uvicorn's supervisor starting (and restarting) `OwnSocketProcess` workers: it makes
    them by the module's name `Process`."""
    made: Any = multiprocess.Process
    multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = made  # type: ignore[misc]


def serve_workers(config: Config) -> None:
    """Runs `config.workers` worker processes under uvicorn's supervisor until it is told to
    stop, each on its own SO_REUSEPORT socket; exits with `STARTUP_FAILURE` if the address is
    taken or cannot be bound."""
    try:
        listening_socket(config.host, config.port, reuse_port=False).close()
    except OSError as error:
        logger.error("could not bind %s:%s: %s", config.host, config.port, error)
        sys.exit(STARTUP_FAILURE)
    with _own_socket_processes():
        multiprocess.Multiprocess(config, sockets=[]).run()

"""The deployment shape of SPEC 9 with real processes: `ledger serve --workers N` (the API in N
worker processes, the projections in the supervising one), `ledger serve --no-projector` with a
separate `ledger project`, and SIGTERM: stop taking work, finish what is in flight, exit 0."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.served import (
    LEDGER,
    START_TIMEOUT,
    STOP_TIMEOUT,
    create_key,
    free_port,
    ledger_env,
    ledger_serve,
)
from tests.support import ASSET_TERMS

pytestmark = pytest.mark.slow


def register_and_read(base: str, key: str) -> None:
    """A command, then a read that waits for the read models to reach it."""
    auth = {"Authorization": f"Bearer {key}"}
    created = httpx.post(f"{base}/v1/assets", json=ASSET_TERMS, headers=auth, timeout=30)
    assert created.status_code == 201, created.text
    position = created.json()["position"]
    url = f"{base}/v1/assets/{ASSET_TERMS['asset_id']}"
    read = httpx.get(url, params={"min_position": position}, headers=auth, timeout=30)
    assert read.status_code == 200, read.text
    assert read.json()["as_of_position"] >= position


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_answers_projects_and_exits_0_on_sigterm(tmp_path: Path, workers: str) -> None:
    env = ledger_env(f"sqlite:///{tmp_path}/ledger.sqlite3")
    key = create_key(env, "admin", tmp_path)
    with ledger_serve(env, tmp_path, "--workers", workers) as served:
        register_and_read(served.base, key)
        assert httpx.get(f"{served.base}/readyz", timeout=30).status_code == 200
        opened = threading.Event()
        stream = threading.Thread(target=listen, args=(served.base, key, opened), daemon=True)
        stream.start()  # an open event stream must not hold the shutdown up
        assert opened.wait(timeout=START_TIMEOUT)
        assert served.stop() == 0, served.output()
        stream.join(timeout=STOP_TIMEOUT)


def listen(base: str, key: str, opened: threading.Event) -> None:
    """Holds /v1/stream open until the server closes it."""
    auth = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(30, read=None)
    with (
        contextlib.suppress(httpx.TransportError),
        httpx.stream("GET", f"{base}/v1/stream", headers=auth, timeout=timeout) as events,
    ):
        opened.set()
        for _ in events.iter_lines():
            pass


LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def tcp_sockets(port: int, state: str) -> set[str]:
    """The inodes of this machine's TCP sockets on local port `port` in `state`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.add(fields[9])
    return inodes


def sockets_of(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    return inodes


def children_of(pid: int) -> list[int]:
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            children += [int(child) for child in listed.read().split()]
    return children


def test_each_worker_listens_on_a_socket_of_its_own_and_takes_a_share_of_a_burst(tmp_path: Path) -> None:
    """16 connections opened at once: on one socket shared by the workers, the worker that
    woke first accepted all of them (16/0 in 9 bursts of 12) and served them on one core
    while the other stayed idle. Each worker listening on a socket of its own
    (SO_REUSEPORT), the kernel spreads them: every worker gets some (all 16 on one of two
    has odds of 1 in 32,768 with an even spread)."""
    env = ledger_env(f"sqlite:///{tmp_path}/ledger.sqlite3")
    with ledger_serve(env, tmp_path, "--workers", "2") as served:
        deadline = time.monotonic() + START_TIMEOUT
        while len(tcp_sockets(served.port, LISTEN)) < 2:  # /healthz answered: one worker is up
            assert time.monotonic() < deadline, served.output()
            time.sleep(0.1)
        listening = tcp_sockets(served.port, LISTEN)
        workers = [pid for pid in children_of(served.process.pid) if sockets_of(pid) & listening]
        assert len(workers) == 2
        assert not sockets_of(served.process.pid) & listening  # the supervisor accepts nothing
        connections = [socket.create_connection(("127.0.0.1", served.port), timeout=30) for _ in range(16)]
        try:
            for connection in connections:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            for connection in connections:
                assert connection.makefile("rb").readline().startswith(b"HTTP/1.1 200")
            established = tcp_sockets(served.port, ESTABLISHED)
            shares = [len(sockets_of(pid) & established) for pid in workers]
        finally:
            for connection in connections:
                connection.close()
        assert sum(shares) == 16
        assert min(shares) >= 1, shares


def test_serve_workers_on_a_port_already_served_fail_to_start(tmp_path: Path) -> None:
    """SO_REUSEPORT would let a second `ledger serve` of the same user share the port of one
    left running, each taking part of the traffic: the supervisor first binds the address
    without it, and fails the start (uvicorn's exit code for a failed start, 3)."""
    env = ledger_env(f"sqlite:///{tmp_path}/ledger.sqlite3")
    with ledger_serve(env, tmp_path, "--workers", "2") as served:
        second = subprocess.run(
            [LEDGER, "serve", "--workers", "2", "--port", str(served.port)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
        )
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"could not bind 127.0.0.1:{served.port}" in second.stderr
        assert httpx.get(f"{served.base}/healthz", timeout=30).status_code == 200


def test_serve_without_projector_and_a_separate_project_process(tmp_path: Path) -> None:
    env = ledger_env(f"sqlite:///{tmp_path}/ledger.sqlite3")
    key = create_key(env, "admin", tmp_path)
    log = tmp_path / "project.log"
    with log.open("wb") as sink:
        project = subprocess.Popen([LEDGER, "project"], env=env, cwd=tmp_path, stdout=sink, stderr=sink)
    try:
        # The read below waits 5 s (the server's own bound) for this process to project the
        # command: it must be projecting by then, not still starting (a cold start on a busy
        # machine takes longer than that).
        deadline = time.monotonic() + START_TIMEOUT
        while "projecting" not in log.read_text(errors="replace"):
            assert project.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        with ledger_serve(env, tmp_path, "--no-projector", "--workers", "2") as served:
            register_and_read(served.base, key)
            assert served.stop() == 0, served.output()
        project.send_signal(signal.SIGTERM)
        assert project.wait(timeout=STOP_TIMEOUT) == 0, log.read_text()
    finally:
        if project.poll() is None:
            project.kill()
            project.wait()


def test_worker_rides_out_an_unreachable_chain_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """`ledger worker` with nothing answering at the chain's RPC URL keeps running (its jobs
    fail and are retried), and SIGTERM stops it cleanly."""
    env = ledger_env(
        f"sqlite:///{tmp_path}/ledger.sqlite3", LEDGER_CHAIN_RPC_URL=f"http://127.0.0.1:{free_port()}"
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen([LEDGER, "worker"], env=env, cwd=tmp_path, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "worker running" not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(3)  # a few periods of failing jobs
        assert worker.poll() is None, log.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=STOP_TIMEOUT) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

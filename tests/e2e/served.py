"""`ledger` as real processes: `ledger serve` on a free port, and one-off CLI commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

LEDGER = str(Path(sys.executable).parent / "ledger")
START_TIMEOUT = 120.0  # a cold start on a busy machine imports web3 and migrates
STOP_TIMEOUT = 10.0  # SPEC 9: SIGTERM, exit 0 within 10 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ledger_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a `ledger` process on `url` (event store and read models)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {**env, "LEDGER_DATABASE_URL": url, **extra}


def ledger_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )


def create_key(env: dict[str, str], role: str, cwd: Path) -> str:
    done = ledger_cli(env, "keys", "create", "--role", role, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


@dataclass
class Served:
    """A running `ledger serve`: its base URL, process and log file."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        """SIGTERM; the exit status (the process is killed if it outlives STOP_TIMEOUT)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


@contextmanager
def ledger_serve(env: dict[str, str], cwd: Path, *args: str) -> Iterator[Served]:
    """`ledger serve` on a free port, once /healthz answers; stopped (SIGTERM) afterwards."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [LEDGER, "serve", "--port", str(port), *args], env=env, cwd=cwd, stdout=sink, stderr=sink
        )
    served = Served(f"http://127.0.0.1:{port}", port, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert served.alive(), served.output()
            try:
                if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"ledger serve did not start: {served.output()}"
            time.sleep(0.2)
        yield served
    finally:
        served.stop()

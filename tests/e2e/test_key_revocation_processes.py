"""SPEC 5 (second edition), across processes: two `ledger serve` processes on one PostgreSQL.
A key revoked, expired or rotated out (with no grace) through the CLI is refused by both within
the bound of a process's key memory (`REMEMBER_SECONDS`, checked in test_api_keys); a rotated
key's old secret is honoured during its grace period. Their request logs are one JSON line per
request and hold no secret. No timing is asserted: each refusal is polled for, up to a
generous bound."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from adapters.cli import app as cli

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
REFUSAL_BOUND = 30.0  # generous: the mechanism refuses within a second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One `ledger serve` process and the number of answers it gave us."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    answered: int = 0
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def status(self, token: str) -> int:
        response = self.client.get(
            f"http://127.0.0.1:{self.port}/v1/audit/verify", headers={"Authorization": f"Bearer {token}"}
        )
        self.answered += 1
        return response.status_code

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ledger serve exited: {self.log.read_text()}")
            try:
                self.client.get(f"http://127.0.0.1:{self.port}/healthz")
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            self.answered += 1
            return
        pytest.fail("ledger serve did not start")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@pytest.fixture
def env(pg_schema_url: str) -> dict[str, str]:
    return {"LEDGER_DATABASE_URL": pg_schema_url, "LEDGER_OPERATOR": "ops-tester"}


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[list[Server]]:
    assert CliRunner().invoke(cli, ["init"], env=env).exit_code == 0
    started = []
    for number in range(2):
        port = free_port()
        log = tmp_path / f"serve-{number}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "ledger"), "serve", "--port", str(port), "--no-projector"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        started.append(Server(process, port, log))
    try:
        for server in started:
            server.wait_until_up()
        yield started
    finally:
        for server in started:
            server.stop()


def keys(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["keys", *args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def refused_by_all(servers: list[Server], token: str) -> bool:
    deadline = time.monotonic() + REFUSAL_BOUND
    pending = list(servers)
    while pending and time.monotonic() < deadline:
        pending = [server for server in pending if server.status(token) != 401]
        if pending:
            time.sleep(0.1)
    return not pending


def test_revocation_expiry_and_rotation_reach_both_processes(
    servers: list[Server], env: dict[str, str]
) -> None:
    secrets = []

    def made(*args: str) -> str:
        token = str(keys(env, "create", *args)["key"])
        secrets.append(token)
        return token

    revoked, expiring, rotated_hard, rotated_soft = (
        made("--role", "auditor"),
        made("--role", "auditor", "--expires-in", "3s"),
        made("--role", "auditor"),
        made("--role", "auditor"),
    )
    for server in servers:  # each process verifies and remembers them
        assert server.status(revoked) == 200
        assert server.status(rotated_hard) == 200
        assert server.status(rotated_soft) == 200

    keys(env, "revoke", revoked.split("_")[1])
    assert refused_by_all(servers, revoked)

    assert refused_by_all(servers, expiring)

    hard = keys(env, "rotate", rotated_hard.split("_")[1], "--grace", "0")
    soft = keys(env, "rotate", rotated_soft.split("_")[1])  # the default grace: one hour
    secrets += [hard["key"], soft["key"]]
    assert refused_by_all(servers, rotated_hard)
    for server in servers:
        assert server.status(hard["key"]) == 200
        assert server.status(soft["key"]) == 200
        assert server.status(rotated_soft) == 200  # the old secret, within its grace: still valid

    listing = CliRunner().invoke(cli, ["keys", "list", "--json"], env=env)
    listed = {k["key_id"]: k for k in json.loads(listing.stdout)}
    assert listed[revoked.split("_")[1]]["revoked_at"] is not None
    assert listed[expiring.split("_")[1]]["expires_at"] is not None
    assert all("secret" not in str(k) for k in listed.values())

    for server in servers:
        server.stop()
        text = server.log.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert len(lines) == server.answered  # one line per request
        assert {line["status"] for line in lines} >= {200, 401}
        for token in secrets:
            assert token.split("_", 2)[2] not in text

"""A real `ledger serve` through a PostgreSQL outage and restart (SPEC 5 amendments, SPEC 9).

The test starts a throwaway PostgreSQL cluster of its own (initdb into a temporary directory
as the `postgres` OS user, a free port; the shared server is never touched), serves the API on
it and keeps a bounded write load going: investments, each with its own Idempotency-Key, sent
again with the same key after a 503 or a lost connection. Meanwhile a reader polls a portfolio
and /readyz. The cluster is stopped (`-m immediate`), probed while down, started, then
restarted under load (`pg_ctl -m immediate restart`). Afterwards:
- no request ever got a 500, and while the store was down the answers were 503s
  (`store_unavailable` with Retry-After, or a command's `outcome_unknown`);
- every command that got a 2xx is in the store exactly once, and nothing else is;
- the hash chain verifies (`ledger verify`);
- the read models catch up to the head without restarting `ledger serve`, and /readyz,
  which was 503 while they could not, is 200 again;
- SIGTERM stops the server with exit status 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.e2e.served import Served, create_key, free_port, ledger_cli, ledger_env, ledger_serve
from tests.support import ASSET_TERMS, wallet_for

pytestmark = pytest.mark.slow
PG_BIN = Path(os.environ.get("LEDGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
INVESTORS = ("alice", "bob", "carol", "dave")
ASSET_ID = str(ASSET_TERMS["asset_id"])
WAVE = 15  # commands that must succeed before each outage, and after the last one
TIMEOUT = 120.0  # a command while the store is away answers 503 after ~20 s (the library's retries;
# over 60 s on a machine loaded by other test runs)
PATIENCE = 120.0  # seconds any one phase may take on a loaded machine before the test gives up


# ----- a throwaway PostgreSQL cluster -----


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary directory, run by the `postgres` OS user."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, program: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(PG_BIN / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=PATIENCE, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr, self.log())

    def pg_ctl(self, *args: str) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "-t", str(int(PATIENCE)), *args)

    def start(self, *how: str) -> None:
        """`start` (or `-m immediate restart`) on its own port and socket directory (without
        them pg_ctl would try 5432), logging to a file (else the server holds our pipe open)."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.root / "server.log"), "-o", options, *(how or ("start",)))

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        _skip_or_fail(f"no PostgreSQL binaries at {PG_BIN} (LEDGER_TEST_PG_BIN) or no runuser")
    if os.geteuid() != 0:
        _skip_or_fail("starting a throwaway PostgreSQL cluster needs root (to run it as `postgres`)")
    root = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    shutil.chown(root, "postgres", "postgres")
    found = Cluster(root, free_port())
    try:
        found.run("initdb", "-D", str(found.data), "-A", "trust", "-U", "postgres", "--no-sync")
        found.start()
        yield found
    finally:
        if (found.data / "postmaster.pid").exists():
            found.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


# ----- load and observation -----


@dataclass
class Traffic:
    """What the clients saw: every status (with its code for 503s), the successful commands."""

    statuses: Counter[str] = field(default_factory=Counter)
    succeeded: dict[str, str] = field(default_factory=dict)  # idempotency key -> investment_id
    readyz: list[tuple[str, int, str]] = field(default_factory=list)  # phase, status, reason
    streamed: list[int] = field(default_factory=list)  # positions of /v1/stream, one connection
    phase: str = "up"
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def saw(self, response: httpx.Response) -> None:
        label = str(response.status_code)
        if response.status_code == 503:
            body = response.json()
            label += f" {body.get('code') or body.get('status')}"
            if body.get("code") == "store_unavailable" and "retry-after" not in response.headers:
                self.errors.append("503 store_unavailable without Retry-After")
        self.statuses[label] += 1


def write_load(base: str, key: str, traffic: Traffic) -> None:
    """Investments one after another; each is sent with its key until it gets a 2xx."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        n = 0
        while not traffic.stop.is_set():
            idem = f"load-{n}"
            body = {"investor_id": INVESTORS[n % len(INVESTORS)], "asset_id": ASSET_ID, "amount": 100_000}
            headers = {**auth, "Idempotency-Key": idem}
            while True:
                try:
                    response = client.post("/v1/investments", json=body, headers=headers)
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                traffic.saw(response)
                if response.status_code == 201:
                    traffic.succeeded[idem] = response.json()["investment_id"]
                    break
                if response.status_code != 503:
                    traffic.errors.append(f"{idem}: {response.status_code} {response.text[:300]}")
                    return
                time.sleep(0.2)
            n += 1


def stream_events(base: str, key: str, traffic: Traffic) -> None:
    """One /v1/stream connection for the whole test: it must outlive the outages (the thread
    ends when the stream does)."""
    auth = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(TIMEOUT, read=None)
    with (
        contextlib.suppress(httpx.TransportError),
        httpx.stream("GET", f"{base}/v1/stream", headers=auth, timeout=timeout) as events,
    ):
        assert events.status_code == 200
        for line in events.iter_lines():
            if line.startswith("id: "):
                traffic.streamed.append(int(line[4:]))


def read_load(base: str, key: str, traffic: Traffic) -> None:
    """A portfolio (the event-loop read pool) and /readyz, over and over."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        while not traffic.stop.is_set():
            try:
                traffic.saw(client.get("/v1/investors/alice/portfolio", headers=auth))
                ready = client.get("/readyz")
            except httpx.TransportError:
                continue
            traffic.saw(ready)
            traffic.readyz.append((traffic.phase, ready.status_code, ready.json().get("status", "")))
            time.sleep(0.1)


def wait_for(what: str, condition: object, served: Served) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():  # type: ignore[operator]
        assert served.alive(), served.output()
        assert time.monotonic() < deadline, f"gave up waiting for {what}: {served.output()}"
        time.sleep(0.2)


# ----- the test -----


def test_serve_rides_out_a_database_restart_exactly_once_and_catches_up(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = ledger_env(cluster.url)
    assert ledger_cli(env, "init", cwd=tmp_path).returncode == 0
    key = create_key(env, "admin", tmp_path)
    with ledger_serve(env, tmp_path) as served:
        auth = {"Authorization": f"Bearer {key}"}
        client = httpx.Client(base_url=served.base, headers=auth, timeout=TIMEOUT)
        setup(client)
        traffic = Traffic()
        threads = [
            threading.Thread(target=load, args=(served.base, key, traffic), daemon=True)
            for load in (write_load, read_load)
        ]
        stream = threading.Thread(target=stream_events, args=(served.base, key, traffic), daemon=True)
        for thread in (*threads, stream):
            thread.start()
        try:
            wait_for("a first wave of commands", lambda: len(traffic.succeeded) >= WAVE, served)

            traffic.phase = "down"
            cluster.pg_ctl("-m", "immediate", "stop")
            probe_while_down(client, traffic, served)
            cluster.start()
            traffic.phase = "up"
            traffic.succeeded["probe"] = send_until_created(client, PROBE, "probe", served)
            done = len(traffic.succeeded)
            wait_for("commands after the outage", lambda: len(traffic.succeeded) >= done + WAVE, served)

            traffic.phase = "restart"
            cluster.start("-m", "immediate", "restart")
            traffic.phase = "up"
            done = len(traffic.succeeded)
            wait_for("commands after the restart", lambda: len(traffic.succeeded) >= done + WAVE, served)
        finally:
            traffic.stop.set()
            for thread in threads:
                thread.join(timeout=PATIENCE)
        assert traffic.errors == []

        head = int(client.get("/v1/audit/verify").json()["head_position"])
        wait_for("the read models at the head", lambda: caught_up(client, head), served)
        wait_for("the event stream at the head", lambda: traffic.streamed[-1:] == [head], served)
        assert traffic.streamed == sorted(set(traffic.streamed))  # in order, none twice
        assert stream.is_alive()  # the same connection all along
        for investment_id in traffic.succeeded.values():
            found = client.get(f"/v1/investments/{investment_id}", params={"min_position": head})
            assert found.status_code == 200, found.text
        assert served.stop() == 0, served.output()
    stream.join(timeout=PATIENCE)

    assert not any(status.startswith("500") for status in traffic.statuses), traffic.statuses
    assert ("down", 503, "store_unavailable") in traffic.readyz, traffic.readyz[-20:]
    created = investments_in_store(env, tmp_path)
    assert sorted(created) == sorted(traffic.succeeded.values())  # each 2xx exactly once, no other
    verified = ledger_cli(env, "verify", "--json", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def setup(client: httpx.Client) -> None:
    for path, body in (
        ("/v1/assets", ASSET_TERMS),
        (f"/v1/assets/{ASSET_ID}/approve", None),
        (f"/v1/assets/{ASSET_ID}/offering", {"open": True}),
    ):
        response = client.post(path, json=body)
        assert response.status_code in (200, 201), response.text
    for investor_id in INVESTORS:
        investor = {"investor_id": investor_id, "country": "ID", "wallet": wallet_for(investor_id)}
        registered = client.post("/v1/investors", json={**investor, "accredited": False})
        assert registered.status_code == 201, registered.text
        kyc = client.post(f"/v1/investors/{investor_id}/kyc", json={"status": "approved"})
        assert kyc.status_code == 200, kyc.text


PROBE = {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 100_000}


def probe_while_down(client: httpx.Client, traffic: Traffic, served: Served) -> None:
    """With the store down: a command and a read answer 503 with Retry-After, and /readyz 503.
    The command got no 2xx; it is sent again (same key) once the store is back, which settles
    whether it was recorded."""
    body = PROBE
    for _ in range(3):  # the first may meet a pooled connection the stop broke: outcome_unknown
        command = client.post("/v1/investments", json=body, headers={"Idempotency-Key": "probe"})
        traffic.saw(command)
        assert command.status_code == 503, command.text
        if command.json()["code"] == "store_unavailable":
            break
    assert command.json()["code"] == "store_unavailable", command.text
    assert command.headers["retry-after"].isdigit()
    read = client.get("/v1/investors/alice/portfolio")
    traffic.saw(read)
    assert (read.status_code, read.json()["code"]) == (503, "store_unavailable"), read.text
    assert read.headers["retry-after"].isdigit()
    wait_for("/readyz to say the store is unavailable", lambda: not_ready(client), served)


def send_until_created(client: httpx.Client, body: dict[str, object], idem: str, served: Served) -> str:
    """The command, sent with its key until it gets its 201 (503s meanwhile); its investment id."""
    created: dict[str, str] = {}

    def attempt() -> bool:
        response = client.post("/v1/investments", json=body, headers={"Idempotency-Key": idem})
        if response.status_code == 201:
            created["id"] = response.json()["investment_id"]
        else:
            assert response.status_code == 503, response.text
        return "id" in created

    wait_for(f"command {idem}", attempt, served)
    return created["id"]


def not_ready(client: httpx.Client) -> bool:
    response = client.get("/readyz")
    return response.status_code == 503 and response.json()["status"] == "store_unavailable"


def caught_up(client: httpx.Client, head: int) -> bool:
    response = client.get("/readyz")
    return response.status_code == 200 and set(response.json()["lag"].values()) == {0} and (
        response.json()["head_position"] >= head
    )


def investments_in_store(env: dict[str, str], cwd: Path) -> list[str]:
    """The investment streams the store holds (each one's first event), from `ledger export`."""
    exported = cwd / "export.jsonl"
    done = ledger_cli(env, "export", str(exported), cwd=cwd)
    assert done.returncode == 0, done.stderr
    created = []
    for line in exported.read_text().splitlines():
        record = json.loads(line)
        if record["version"] == 1 and ":Investment." in record["topic"]:
            created.append(record["stream_id"])
    return created

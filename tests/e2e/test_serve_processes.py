"""The deployment shape of SPEC 9 with real processes: `ledger serve --workers N` (the API in N
worker processes, the projections in the supervising one), `ledger serve --no-projector` with a
separate `ledger project`, and SIGTERM: stop taking work, finish what is in flight, exit 0."""

from __future__ import annotations

import contextlib
import signal
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

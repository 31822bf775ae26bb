"""`ledger serve`, `project`, `worker`: the long-running processes (wired by `bootstrap`)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer

from adapters import bootstrap
from adapters.cli.common import (
    checked,
    configured_audit_key,
    err,
    out,
    progress,
)
from adapters.cli.demo import run_demo
from adapters.services import Services
from ledger.config import Settings


def project(
    once: Annotated[bool, typer.Option("--once", help="Catch up to the head, then stop.")] = False,
) -> None:
    """Run the projection runner: keep every read model at the head of the event store."""
    config = bootstrap.settings()
    ledger = checked(config)
    runner = bootstrap.build_runner(ledger, config)
    try:
        if once:
            with progress("projecting", sum(runner.lag().values()) // max(1, len(runner.views))) as advance:
                runner.catch_up(progress=advance)
            out.print(f"read models at position {min(runner.positions().values())}")
        else:
            out.print("projecting; Ctrl-C or SIGTERM to stop")
            # SIGTERM: the batch in flight is committed, then the loop ends and the process exits 0.
            signal.signal(signal.SIGTERM, lambda signum, frame: runner.stop())
            runner.run_forever(config.database_url)
    except KeyboardInterrupt:
        runner.stop()
    finally:
        ledger.close()
        runner.engine.dispose()


def worker(threads: Annotated[int, typer.Option(help="dramatiq worker threads")] = 1) -> None:
    """Run the background jobs on dramatiq until Ctrl-C: the chain jobs (outbox, mirror,
    periodic reconciliation) when the chain adapter is on, and the periodic signing of tree
    heads when a signing key is configured."""
    config = bootstrap.settings()
    key = configured_audit_key(config)
    if key is None and not config.chain_rpc_url:
        err.print(
            "[red]usage[/red]: nothing to run: set LEDGER_CHAIN_RPC_URL (chain jobs) "
            "or LEDGER_AUDIT_KEY_FILE (signed tree heads)"
        )
        raise typer.Exit(2)
    ledger = checked(config)
    try:
        with bootstrap.worker_process(ledger, key, config, threads) as process:
            process.start()
            where = "Redis" if config.redis_url else "in-process broker"
            jobs = ", ".join(process.jobs.actors)
            out.print(f"worker running {jobs} on {where}; Ctrl-C or SIGTERM to stop")
            stopped = threading.Event()
            signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
            try:
                stopped.wait()
            except KeyboardInterrupt:
                pass
            finally:
                process.stop()
    finally:
        ledger.close()


def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    demo_keys: Annotated[
        bool, typer.Option(help="Create and print an admin, auditor and investor key.")
    ] = False,
    projector: Annotated[bool, typer.Option(help="Run the projection runner in this process.")] = True,
    workers: Annotated[int, typer.Option(min=1, help="API worker processes (uvicorn).")] = 1,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo while already serving (as `ledger demo`).")
    ] = False,
    demo_chain: Annotated[
        bool, typer.Option("--demo-chain", help="With --demo: run it through a local anvil chain.")
    ] = False,
) -> None:
    """Serve the HTTP API (with the projection runner in-process unless --no-projector).

    With --workers N, N worker processes serve the API (each builds it through
    `bootstrap.build_api`) while this process supervises them and runs the one projection
    runner and the in-process chain jobs. SIGTERM: stop taking requests, let those in flight
    finish (at most GRACE_SECONDS), finish the projection batch in flight, exit 0.

    With --demo the API serves at once while the demo loads in the background (its progress
    printed stage by stage); the console URL and the keys are printed when it is loaded."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config = bootstrap.settings()
    services = bootstrap.build_services(config)
    base = f"http://{host}:{port}"
    if demo:
        out.print(f"serving at {base} while the demo loads (console and keys follow when it is loaded)")
    elif demo_keys:
        _print_demo_keys(services, base)
    else:
        _print_urls(base)
    with bootstrap.serving(services, config, projector) as jobs:
        if jobs is not None:
            out.print("chain jobs run in this process (LEDGER_REDIS_URL unset)")
        target = bootstrap.api_target(services, config, workers)
        if demo:  # started once the app is built: migrations (alembic) must not run in two threads
            threading.Thread(
                target=_serve_demo, args=(services, config, demo_chain, demo_keys, base), daemon=True
            ).start()
        bootstrap.run_api(target, host, port, workers)


def _print_demo_keys(services: Services, base: str) -> None:
    for made in bootstrap.demo_keys(services):
        suffix = f" (investor {made.investor_id})" if made.investor_id else ""
        out.print(f"{made.role} key{suffix}: [bold]{made.key}[/bold]", soft_wrap=True)  # never split a key
    _print_urls(base)


def _print_urls(base: str) -> None:
    urls = f"API {base}/v1   docs {base}/docs   health {base}/healthz   metrics {base}/metrics"
    out.print(urls, soft_wrap=True)
    out.print(f"console [bold]{base}/console[/bold] (sign in with an auditor or admin key)", soft_wrap=True)


def _serve_demo(services: Services, config: Settings, chain: bool, keys: bool, base: str) -> None:
    """`serve --demo`: the demo loaded on the served ledger, then the keys and URLs."""
    started = time.monotonic()
    try:
        run_demo(services.ledger, config, chain, as_json=False)
        out.print(f"demo loaded in {time.monotonic() - started:.0f} s")
    except typer.Exit:  # already explained (no chain to run it on)
        err.print("[red]the demo did not load[/red]; serving the store as it is")
    except Exception:  # the API keeps serving what was loaded
        err.print_exception()
        err.print("[red]the demo did not finish loading[/red]; serving the store as it is")
    if keys:
        _print_demo_keys(services, base)
    else:
        _print_urls(base)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM outside uvicorn's own handling (while starting, and the signal uvicorn raises
    again once it has shut down): a clean exit through every `finally`, status 0."""
    raise SystemExit(0)

"""What the chain benchmarks share: the import path, the database, a scratch schema, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "src", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

PG_URL = os.environ.get("LEDGER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def logger(name: str) -> Callable[[str], None]:
    """Progress on stderr, prefixed with the benchmark's name (stdout carries only JSON)."""

    def log(message: str) -> None:
        print(f"[bench/{name}] {message}", file=sys.stderr, flush=True)

    return log


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@contextmanager
def scratch_schema(
    log: Callable[[str], None], *, prefix: str = "bench_", digits: int = 12, keep: bool = False
) -> Iterator[str]:
    """A fresh schema of the benchmark database (`prefix` and `digits` random hex digits), dropped
    afterwards whatever happens, unless `keep` (the caller's `BENCH_KEEP_SCHEMA=1`)."""
    schema = f"{prefix}{uuid.uuid4().hex[:digits]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    log(f"schema {schema} created")
    try:
        yield schema
    finally:
        if keep:
            log(f"schema {schema} kept (BENCH_KEEP_SCHEMA=1)")
        else:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            log(f"schema {schema} dropped")


def source_state() -> dict[str, Any]:
    """The commit measured and whether src/ or migrations/ differ from it (others may be editing)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "src_dirty": bool(git("status", "--porcelain", "--", "src", "migrations")),
    }

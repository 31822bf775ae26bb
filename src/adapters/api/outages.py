"""While the store cannot be reached, every request answers 503 `store_unavailable` with
`Retry-After` (SPEC 5, amendments), never 500: the drivers' connection-level failures
(PostgreSQL restarted or away, SQLite locked) are mapped here, in one place. A command whose
commit may or may not have happened keeps its own 503 (`outcome_unknown`)."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
import sqlalchemy.exc
from eventsourcing import persistence
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.api.common import problem

RETRY_AFTER_SECONDS = 1
STORE_ERRORS: tuple[type[Exception], ...] = (
    persistence.OperationalError,  # eventsourcing's wrapping of the drivers' errors
    persistence.InterfaceError,
    psycopg.OperationalError,  # also psycopg_pool.PoolTimeout
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
)
logger = logging.getLogger(__name__)


def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    # The driver's message may name hosts and users: it goes to the log, not to the caller.
    where = f"{request.method} {request.url.path}"
    logger.warning("store unavailable (%s): %s: %s", where, type(error).__name__, error)
    detail = "the store cannot be reached now; retry later"
    response = problem(503, "store_unavailable", "Store unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def install(api: FastAPI) -> None:
    for error in STORE_ERRORS:
        api.add_exception_handler(error, store_unavailable)

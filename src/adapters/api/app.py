"""The FastAPI application: routers, one problem+json error handler, metrics middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from adapters.api import outages
from adapters.api.common import ApiError, problem
from adapters.api.docs import install_docs
from adapters.api.limits import BodyLimits, restore_recursion_limit
from adapters.api.metrics import LatencyMiddleware
from adapters.api.readpool import ReadPool
from adapters.api.requestlog import RequestLogMiddleware
from adapters.api.responses import install_document, status_of
from adapters.api.routers import (
    assets,
    audit,
    distributions,
    health,
    investments,
    investors,
    keys,
    lists,
    proofs,
    reconciliations,
)
from adapters.console import install as install_console
from adapters.services import Services
from ledger import errors
from ledger.config import Settings


def create_app(services: Services, config: Settings | None = None) -> FastAPI:
    restore_recursion_limit()
    config = config or Settings()

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        api.state.read_pool = pool = await ReadPool.open(services.runner.engine)
        try:
            yield
        finally:
            api.state.read_pool = None
            if pool is not None:
                await pool.close()

    api = FastAPI(
        title="Tokenized-securities ledger",
        version="1.0.0",
        description="Register of record for tokenized securities: commands, read models, audit.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served offline by `install_docs`
        redoc_url=None,
    )
    api.state.services = services
    api.state.read_pool = None  # opened on the serving loop at startup (PostgreSQL only)
    for router in (
        assets.router,
        investors.router,
        investments.router,
        distributions.router,
        reconciliations.router,
        audit.router,
        proofs.router,
        health.router,
        keys.router,
        lists.router,
    ):
        api.include_router(router)
    install_console(api)
    api.add_middleware(LatencyMiddleware, metrics=services.metrics)
    api.add_middleware(BodyLimits, max_bytes=config.max_body_bytes, max_depth=config.max_json_depth)
    api.add_middleware(RequestLogMiddleware)  # outermost: logs every request (refusals too), with its id

    @api.exception_handler(errors.LedgerError)
    def ledger_error(request: Request, error: errors.LedgerError) -> JSONResponse:
        services.metrics.command(request, error.code)
        status = status_of(type(error))
        return problem(status, error.code, error.code.replace("_", " ").capitalize(), error.detail)

    @api.exception_handler(ApiError)
    def api_error(request: Request, error: ApiError) -> JSONResponse:
        return problem(error.status, error.code, error.code.replace("_", " ").capitalize(), error.detail)

    @api.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        services.metrics.command(request, "validation_error")
        return problem(422, "validation_error", "invalid input", _describe(error.errors()))

    @api.exception_handler(HTTPException)
    def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 400:  # a body that is not JSON (or not UTF-8) is invalid input
            return problem(422, "validation_error", "Invalid input", str(error.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return problem(error.status_code, code, code.replace("_", " "), str(error.detail))

    outages.install(api)
    install_document(api)
    install_docs(api)

    @api.exception_handler(Exception)
    def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Never a traceback or a secret in the body; the server log has the details.
        return problem(500, "internal_error", "internal error", "the request could not be completed")

    return api


def _operation_id(route: APIRoute) -> str:
    """An operation is named by its function (`register_asset`), as generated clients name it."""
    return route.name


def _describe(problems: Any) -> str:
    parts = []
    for item in problems:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000]

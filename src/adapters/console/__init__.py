"""The auditor console: a read-only, server-rendered view of the register under /console of
`ledger serve` (SPEC 10), signed in with an auditor or admin API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from adapters.console import asset_pages, history_pages, investor_pages, pages, session
from adapters.console.tables import Page


def install(api: FastAPI) -> None:
    """Adds the console's pages, its style sheet and its two refusals to the API's app."""
    for module in (pages, asset_pages, investor_pages, history_pages):
        api.include_router(module.router)
    static = StaticFiles(directory=Path(__file__).parent / "static")
    api.mount("/console/static", static, name="console-static")

    @api.exception_handler(session.SignInRequiredError)
    def sign_in_required(request: Request, error: session.SignInRequiredError) -> Response:
        response = pages.see_other("/console/sign-in")
        session.end(response)  # a cookie that no longer signs in is dropped
        return response

    @api.exception_handler(session.FormRefusedError)
    def form_refused(request: Request, error: session.FormRefusedError) -> Response:
        message = "The form was refused (it is out of date or came from another site): reload and try again."
        return pages.render(request, "error.html", Page("Refused"), None, 403, message=message)

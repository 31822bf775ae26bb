"""What every console page shares (rendering, CSV, security headers, the session dependency) and
the sign-in and sign-out pages.

Every page is read-only and built from `queries` on one snapshot of the read models; each table
it shows is also served as CSV (`?csv=<table name>`) from the same rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from adapters.console import session
from adapters.console.session import Session
from adapters.console.tables import Page, cell_text, to_csv

HERE = Path(__file__).parent
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
templates.filters["cell"] = cell_text
templates.filters["quote"] = lambda value: quote(str(value), safe="")
# A page shows this many rows of a table at most (a cap table of 100,000 holders stays a page);
# its CSV has every row.
templates.globals["shown_rows"] = 1000
router = APIRouter(prefix="/console", include_in_schema=False)
Signed = Annotated[Session, Depends(session.current)]
ASSET_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
INVESTOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def render(
    request: Request, name: str, page: Page, signed: Session | None, status: int = 200, **context: Any
) -> Response:
    """The page as HTML, or one of its tables as CSV when `?csv=<table name>` asks for it."""
    wanted = request.query_params.get("csv")
    if wanted is not None and signed is not None:
        table = page.table(wanted)
        if table is None:
            return _html(request, "error.html", Page("Not found"), signed, 404, message="No such table.")
        filename = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{page.title}-{table.name}").strip("-")
        return Response(
            to_csv(table),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return _html(request, name, page, signed, status, **context)


def _html(
    request: Request, name: str, page: Page, signed: Session | None, status: int, **context: Any
) -> Response:
    csrf = signed.csrf if signed is not None else session.csrf_token(request)
    body = templates.get_template(name).render(
        page=page, signed=signed, csrf=csrf, path=request.url.path, query=_csv_query(request), **context
    )
    response = HTMLResponse(body, status_code=status, headers=HEADERS)
    session.keep_csrf(response, request)
    return response


def _csv_query(request: Request) -> str:
    """The page's query string, for its CSV links (`&csv=<name>` is appended)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "csv"]
    return urlencode(kept)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def not_found(request: Request, signed: Session, what: str) -> Response:
    return _html(request, "error.html", Page("Not found"), signed, 404, message=f"{what} not found.")


# ----- signing in and out -----


@router.get("")
def home(signed: Signed) -> RedirectResponse:
    return see_other("/console/assets")


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _html(request, "sign_in.html", Page("Sign in"), None, 200)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await session.form(request)
    token = fields.get("key", "")
    principal = await session.key_principal(request, token) if token else None
    if principal is None:
        message = "That is not a valid API key (or it was revoked or has expired)."
        return _html(request, "sign_in.html", Page("Sign in"), None, 401, message=message)
    if principal.role not in session.ROLES:
        role = principal.role.capitalize()
        message = f"{role} keys cannot sign in to the console: use an auditor or admin key."
        return _html(request, "sign_in.html", Page("Sign in"), None, 403, message=message)
    response = see_other("/console/assets")
    session.start(response, request, principal, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await session.form(request)
    response = see_other("/console/sign-in")
    session.end(response)
    return response

"""The console's web application: ``create_app(desk, config, data_dir)``.

Pages (Jinja2, server-rendered, in Vietnamese or English), the live stream (``/stream``), the
snapshots, the JSON API (``/api/v1``, OpenAPI at ``/api/v1/openapi.json``) and the static
files (``/static``: the pages' CSS and JavaScript, nothing from elsewhere). The accounts live
in the desk's SQLite file (``console.accounts``).

Around it, outermost first: security headers, a bounded request body, then who is asking and
the CSRF check (``console.auth``). Errors are JSON (``{"detail": ...}``) under ``/api/`` and a
page elsewhere; someone not logged in who asks for a page is sent to the login page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from commune.config import ReceiverConfig
from commune.desk import Desk
from console import actions, api, feeds, login_pages, pages, users_page
from console.accounts import Accounts
from console.auth import API_PREFIX, AuthMiddleware, LoginRequired
from console.i18n import load_catalogs
from console.middleware import BufferedBody, SecurityHeaders
from console.streams import Notices
from console.web import Console, make_templates, render

STATIC_DIR = Path(__file__).parent / "static"
TITLE = "tuquan police console API"


def create_app(
    desk: Desk, config: ReceiverConfig, data_dir: Path, *, accounts: Accounts | None = None
) -> FastAPI:
    """The app over a desk that is already started (the caller starts and stops it)."""
    console = Console(
        desk=desk,
        config=config,
        data_dir=Path(data_dir),
        accounts=accounts if accounts is not None else Accounts(desk.db),
        catalogs=load_catalogs(),
        templates=make_templates(),
        notices=Notices(desk.db),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        console.notices.attach(desk.listen)
        try:
            yield
        finally:
            console.notices.detach()

    app = FastAPI(
        title=TITLE,
        version="1",
        openapi_url=f"{API_PREFIX}v1/openapi.json",
        docs_url=None,  # the interactive docs load scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.console = console
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (login_pages, pages, actions, feeds, users_page, api):
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # Added innermost first: the CSRF check needs the buffered body.
    app.add_middleware(AuthMiddleware, accounts=console.accounts)
    app.add_middleware(BufferedBody)
    app.add_middleware(SecurityHeaders)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document ``/api/v1/openapi.json`` serves, made without a desk (for tools
    that read it offline, and the fuzz tests)."""
    app = FastAPI(title=TITLE, version="1", openapi_url=f"{API_PREFIX}v1/openapi.json")
    app.include_router(api.router)
    return app.openapi()


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


async def _to_login(request: Request, exc: Exception) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request) or request.url.path.startswith("/static/"):
        return await http_exception_handler(request, exc)
    return _error_page(request, exc.status_code, str(exc.detail))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _is_api(request):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(_describe(e) for e in exc.errors()[:5])
    return _error_page(request, 400, problems)


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path"))
    return f"{where}: {error.get('msg', 'invalid')}"


def _error_page(request: Request, status: int, detail: str) -> Response:
    return render(request, "error.html", {"status": status, "detail": detail}, status)

"""Logging in and out, and the language switcher.

The session cookie is ``Secure; HttpOnly; SameSite=Strict`` (browsers treat http://127.0.0.1
and http://localhost as secure, so it works on a loopback console without TLS; anywhere else
put the console behind HTTPS). It lives ``[console] session_hours``.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from console.auth import SESSION_COOKIE, Principal, principal_of, viewer
from console.csrf import LOGIN_COOKIE, LOGIN_PATH
from console.i18n import LANG_COOKIE, LANGUAGES
from console.labels import PROBLEMS
from console.login import LOCKED, OK, attempt_login
from console.web import console_of, local_path, render, translate

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_MAX_AGE_S = 24 * 3600
LANG_MAX_AGE_S = 365 * 24 * 3600
Next = Annotated[str, Query(max_length=2000)]


def _login_page(
    request: Request,
    next_path: str,
    *,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": next_path, "login_error": error, "username": username},
        status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_CSRF_MAX_AGE_S,
        path=LOGIN_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.get(LOGIN_PATH)
def login_form(request: Request, next: Next = "/") -> Response:
    target = local_path(next)
    if principal_of(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(request, target)


@router.post(LOGIN_PATH)
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    console = console_of(request)
    result = await attempt_login(
        console.accounts, console.desk.audit, console.config.console, username, password
    )
    target = local_path(next)
    if result.outcome != OK or result.session is None:
        problem = "locked" if result.outcome == LOCKED else "login"
        error = translate(request, PROBLEMS[problem])
        status = 429 if result.outcome == LOCKED else 401
        return _login_page(request, target, error=error, username=username[:64], status_code=status)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=int(float(console.config.console.session_hours) * 3600),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(
        LOGIN_COOKIE, path=LOGIN_PATH, secure=True, httponly=True, samesite="strict"
    )
    return response


@router.get("/logout")
def logout_page(request: Request, who: Annotated[Principal, Depends(viewer)]) -> Response:
    return render(request, "logout.html")


@router.post("/logout")
def logout(request: Request) -> Response:
    principal = principal_of(request)
    if principal is not None and principal.via == "session":
        console = console_of(request)
        console.accounts.close_session(principal.session_hash)
        console.desk.audit.append(principal.name, "logout")
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: Next = "/") -> Response:
    if lang not in LANGUAGES:
        raise HTTPException(404, f"no language {lang!r}: {', '.join(LANGUAGES)}")
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=LANG_MAX_AGE_S,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response

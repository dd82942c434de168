"""Who is asking: a browser session (cookie) or an API token (``Authorization: Bearer``).

``AuthMiddleware`` resolves the principal once per request and puts it in the request's state;
it also refuses, with 403, every unsafe request a session cookie would authenticate without
the session's CSRF token (``console.csrf``). The routes then ask for a role with
``require(VIEWER | OPERATOR | ADMIN)``.

A request that carries an ``Authorization`` header is judged by it alone: its cookie is
ignored, so it needs no CSRF token (a page of another site cannot add that header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from console.accounts import OPERATOR, VIEWER, Accounts, role_allows
from console.csrf import LOGIN_PATH, csrf_problem, login_csrf_cookie, refuse

SESSION_COOKIE = "tuquan_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/"
TOKEN_ACTOR_PREFIX = "token:"

# Declares the bearer scheme in the OpenAPI document; the middleware does the checking.
bearer_scheme = HTTPBearer(auto_error=False, description="an API token (tuquan console token add)")


@dataclass(frozen=True)
class Principal:
    """The user (``name``, or ``token:<name>`` for an API token) and their role."""

    name: str
    role: str
    via: str  # "session" or "token"
    csrf: str = ""
    session_hash: str = ""


class LoginRequired(Exception):
    """A page asked for by someone not logged in: they are sent to the login page."""


class AuthMiddleware:
    def __init__(self, app: ASGIApp, accounts: Accounts) -> None:
        self.app = app
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        principal = self._principal(headers)
        scope.setdefault("state", {})["principal"] = principal
        if scope["method"] in UNSAFE_METHODS and "authorization" not in headers:
            path = str(scope.get("path", ""))
            if principal is not None:
                problem = csrf_problem(scope, headers, principal.csrf)
            elif path == LOGIN_PATH:
                problem = csrf_problem(scope, headers, login_csrf_cookie(headers))
            elif path.startswith(API_PREFIX):
                problem = None  # no credentials at all: the route answers 401
            else:
                problem = "not logged in"
            if problem is not None:
                await refuse(scope, receive, send, problem)
                return
        await self.app(scope, receive, send)

    def _principal(self, headers: Headers) -> Principal | None:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer":
                return None
            token = self.accounts.token(credentials.strip())
            if token is None:
                return None
            return Principal(TOKEN_ACTOR_PREFIX + token.name, token.role, "token")
        cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        if not cookie:
            return None
        session = self.accounts.session(cookie)
        if session is None:
            return None
        return Principal(session.user, session.role, "session", session.csrf, session.token_hash)


def principal_of(request: Request) -> Principal | None:
    found: Any = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else None


def require(role: str) -> Any:
    """A dependency: the principal, if their role is at least ``role``; else 401 (API, no
    credentials), a redirect to the login page (a page), or 403 (a role too low)."""

    async def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if principal is None:
            if request.url.path.startswith(API_PREFIX):
                raise HTTPException(401, "log in or send an API token (Authorization: Bearer)")
            raise LoginRequired()
        if not role_allows(principal.role, role):
            raise HTTPException(
                403, f"this needs the {role} role; {principal.name} is a {principal.role}"
            )
        return principal

    return dependency


viewer = require(VIEWER)
operator = require(OPERATOR)

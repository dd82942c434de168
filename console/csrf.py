"""CSRF: every unsafe request a session cookie authenticates carries that session's token.

Pages put it in each form as the hidden field ``csrf_token``; scripts send it in the
``X-CSRF-Token`` header. The login form, before there is a session, uses a double-submit
token: a random value in a cookie of its own (``tuquan_login``) and the same value in the form.
SameSite=Strict cookies already keep other sites' requests out; the token is the second wall.

The body has been read by ``console.middleware.BufferedBody`` (``BODY_KEY`` in the scope), so
the form field can be checked here without taking the body from the route.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
LOGIN_COOKIE = "tuquan_login"
LOGIN_PATH = "/login"
BODY_KEY = "tuquan.body"
FORM_TYPE = "application/x-www-form-urlencoded"


def login_csrf_cookie(headers: Headers) -> str | None:
    return cookie_parser(headers.get("cookie", "")).get(LOGIN_COOKIE) or None


def given_token(scope: Scope, headers: Headers) -> str | None:
    """The token the request carries: the header, else the form field of a urlencoded body."""
    header = headers.get(HEADER)
    if header:
        return header
    if not headers.get("content-type", "").startswith(FORM_TYPE):
        return None
    body = scope.get(BODY_KEY)
    if not isinstance(body, bytes):
        return None
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=100).get(FORM_FIELD)
    return values[0] if values else None


def csrf_problem(scope: Scope, headers: Headers, expected: str | None) -> str | None:
    """Why the request's token does not do, or None when it matches ``expected``."""
    if not expected:
        return "no security token was issued to this browser: reload the page"
    given = given_token(scope, headers)
    if not given:
        return "the security token (CSRF) is missing"
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        return "the security token (CSRF) is wrong: reload the page"
    return None


async def refuse(scope: Scope, receive: Receive, send: Send, problem: str) -> None:
    """403 with the reason, as JSON under /api/, as text elsewhere."""
    response: Response
    if str(scope.get("path", "")).startswith("/api/"):
        response = JSONResponse({"detail": problem}, status_code=403)
    else:
        response = PlainTextResponse(f"403 Forbidden: {problem}", status_code=403)
    await response(scope, receive, send)

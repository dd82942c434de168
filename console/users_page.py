"""The administrator's users page: who may log in, with which role; add, remove, unlock.
(``tuquan console user ...`` does the same from the command line.) Each change is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from starlette.responses import RedirectResponse, Response

from console.accounts import ADMIN, ROLES, AccountError
from console.auth import Principal, require
from console.labels import PROBLEMS
from console.web import console_of, render, translate
from core.events import utc_now_iso

router = APIRouter(include_in_schema=False)
Admin = Annotated[Principal, Depends(require(ADMIN))]
UserName = Annotated[str, Path(max_length=64)]


def _page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    accounts = console_of(request).accounts
    return render(
        request,
        "users.html",
        {"users": accounts.users(), "roles": ROLES, "now": utc_now_iso(), "error": error},
        status_code,
    )


def _refused(request: Request, exc: AccountError) -> Response:
    return _page(request, f"{translate(request, PROBLEMS['user'])}: {exc}", 400)


@router.get("/users")
def users_page(request: Request, who: Admin) -> Response:
    return _page(request)


@router.post("/users")
def add_user(
    request: Request,
    who: Admin,
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    console = console_of(request)
    try:
        console.accounts.add_user(name, role, password)
    except AccountError as exc:
        return _refused(request, exc)
    console.desk.audit.append(who.name, "user_added", detail={"user": name, "role": role})
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{name}/remove")
def remove_user(request: Request, who: Admin, name: UserName) -> Response:
    console = console_of(request)
    if name == who.name:
        return _refused(request, AccountError("you cannot remove yourself"))
    try:
        console.accounts.remove_user(name)
    except AccountError as exc:
        return _refused(request, exc)
    console.desk.audit.append(who.name, "user_removed", detail={"user": name})
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{name}/unlock")
def unlock_user(request: Request, who: Admin, name: UserName) -> Response:
    console = console_of(request)
    try:
        console.accounts.unlock(name)
    except AccountError as exc:
        return _refused(request, exc)
    console.desk.audit.append(who.name, "user_unlocked", detail={"user": name})
    return RedirectResponse("/users", status_code=303)

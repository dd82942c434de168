"""What every page handler shares: the ``Console`` (desk, config, accounts, catalogs,
templates, live notices), reached from the request, and ``render``, which picks the
language and gives each template the user, the CSRF token and the labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from babel.support import Translations
from fastapi import Request
from markupsafe import Markup
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from commune.config import ReceiverConfig
from commune.desk import Desk
from console.accounts import OPERATOR, Accounts, role_allows
from console.auth import Principal, principal_of
from console.i18n import choose_language, install
from console.labels import LABELS
from console.queries import alarm_count
from console.streams import Notices

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass
class Console:
    desk: Desk
    config: ReceiverConfig
    data_dir: Path
    accounts: Accounts
    catalogs: dict[str, Translations]
    templates: Jinja2Templates
    notices: Notices


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def time_tag(value: str | None) -> Markup:
    """A stored UTC time as ``<time>``: readable as it is, and shown in the browser's own
    time zone by the page's script."""
    if not value:
        return Markup("<span class='no-time'>–</span>")
    shown = value.replace("T", " ").replace("Z", " UTC")
    return Markup('<time datetime="{}">{}</time>').format(value, shown)


def local_path(value: str | None, default: str = "/") -> str:
    """A path of this site to go back to (``next``): never another site's address."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 32 for c in value) or len(value) > 2000:
        return default
    return value


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    install(env)
    env.globals.update(LABELS)
    env.filters["when"] = time_tag
    env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    return Jinja2Templates(env=env)


def language(request: Request) -> str:
    console = console_of(request)
    return choose_language(
        request.cookies,
        request.headers.get("accept-language", ""),
        console.config.console.language,
    )


def translate(request: Request, message: str) -> str:
    """``message`` (a msgid) in the request's language."""
    return str(console_of(request).catalogs[language(request)].gettext(message))


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    console = console_of(request)
    lang = language(request)
    principal: Principal | None = principal_of(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        alarms = alarm_count(console.desk.db) if principal is not None else 0
    except Exception:  # the page still renders when the store is busy
        alarms = 0
    values: dict[str, Any] = {
        "translations": console.catalogs[lang],
        "lang": lang,
        "principal": principal,
        "csrf_token": principal.csrf if principal is not None else "",
        "can_act": principal is not None and role_allows(principal.role, OPERATOR),
        "is_admin": principal is not None and role_allows(principal.role, "admin"),
        "alarms": alarms,
        "here": here,
        "message": None,
        "error": None,
    }
    values.update(context or {})
    response = console.templates.TemplateResponse(request, name, values, status_code)
    response.headers["content-language"] = lang
    response.headers["vary"] = "Accept-Language, Cookie"
    return response

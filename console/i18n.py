"""The console's two languages, from gettext catalogs: ``locales/<lang>/LC_MESSAGES/console.po``.

The ``.po`` files are the source (nothing compiled is kept): at start each one is read with
Babel and compiled to a ``.mo`` in memory. A request's language is the ``lang`` cookie (set by
the switcher links), else the best match of the browser's Accept-Language, else the config's
``[console] language``.

Templates translate with Jinja2's i18n extension (``{% trans %}``, ``_()``); the gettext
functions read the catalog from the template's context (``translations``), so one environment
serves both languages at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("vi", "en")
LANG_COOKIE = "lang"
DOMAIN = "console"
LOCALES_DIR = Path(__file__).parent / "locales"
MAX_ACCEPT_LANGUAGE = 50  # entries of the header looked at


def po_path(lang: str, locales_dir: Path = LOCALES_DIR) -> Path:
    return locales_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_catalogs(locales_dir: Path = LOCALES_DIR) -> dict[str, Translations]:
    """Every language's catalog, compiled in memory."""
    out: dict[str, Translations] = {}
    for lang in LANGUAGES:
        with po_path(lang, locales_dir).open("rb") as fh:
            catalog = read_po(fh, locale=lang, domain=DOMAIN)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        out[lang] = Translations(buf, domain=DOMAIN)
    return out


def accept_languages(header: str) -> list[str]:
    """The languages of an Accept-Language header, most wanted first (q=0 left out)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if 0 < q <= 1:
            weighted.append((-q, index, tag.replace("_", "-")))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(cookies: Mapping[str, str], accept_language: str, default: str) -> str:
    wanted = cookies.get(LANG_COOKIE)
    if wanted in LANGUAGES:
        return wanted
    found = negotiate_locale(accept_languages(accept_language), list(LANGUAGES), sep="-")
    if found in LANGUAGES:
        return found
    return default if default in LANGUAGES else LANGUAGES[0]


def locale_of(lang: str) -> Locale:
    return Locale.parse(lang)


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    translations: Any = context.get("translations")
    return str(translations.gettext(message)) if translations is not None else message


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    translations: Any = context.get("translations")
    if translations is None:
        return singular if n == 1 else plural
    return str(translations.ngettext(singular, plural, n))


def install(env: jinja2.Environment) -> None:
    """Give ``env`` gettext functions that use the context's ``translations``."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )

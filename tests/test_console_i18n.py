"""The console's catalogs: every message the templates and the label tables use is translated
in both languages (extracted with Babel, as ``pybabel extract`` would), the catalogs load, and
the browser's Accept-Language is read the way browsers send it."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from console.i18n import LANGUAGES, accept_languages, choose_language, load_catalogs, po_path
from console.labels import KINDS as KIND_LABELS
from core.events import KINDS

CONSOLE = Path(__file__).resolve().parents[1] / "console"
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}


def used_messages() -> dict[str, str]:
    """msgid -> where it is used."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(CONSOLE), METHODS, options_map=OPTIONS, keywords=KEYWORDS
    ):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def test_the_extraction_finds_the_templates_and_the_labels() -> None:
    used = used_messages()
    assert "Acknowledge" in used and used["Acknowledge"].startswith("templates/")
    assert "Panic" in used and used["Panic"].startswith("labels.py")
    assert len(used) > 150


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated(lang: str) -> None:
    with po_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    missing = [
        f"{where}: {msgid!r}"
        for msgid, where in used_messages().items()
        if catalog.get(msgid) is None or not catalog.get(msgid).string
    ]
    assert missing == []
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []


def test_the_vietnamese_catalog_is_vietnamese() -> None:
    vi = load_catalogs()["vi"]
    assert vi.gettext("Panic") == "Báo động khẩn cấp"
    assert vi.gettext("Acknowledge") == "Tiếp nhận"
    untranslated = [m for m in used_messages() if vi.gettext(m) == m]
    assert untranslated == []


def test_every_kind_that_opens_an_alert_has_a_name() -> None:
    assert set(KINDS) <= set(KIND_LABELS)


def test_placeholders_survive_translation() -> None:
    catalogs = load_catalogs()
    for msgid in used_messages():
        if "%(" in msgid:
            for lang in LANGUAGES:
                text = catalogs[lang].gettext(msgid)
                names = sorted(p.split(")")[0] for p in msgid.split("%(")[1:])
                assert sorted(p.split(")")[0] for p in text.split("%(")[1:]) == names, text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("vi-VN,vi;q=0.9,en-US;q=0.8,en;q=0.7", ["vi-VN", "vi", "en-US", "en"]),
        ("en;q=0.5, vi", ["vi", "en"]),
        ("fr-CH, fr;q=0.9, *;q=0.5", ["fr-CH", "fr"]),
        ("vi;q=0, en", ["en"]),
        ("en;q=abc, vi;q=0.2", ["vi"]),
        ("", []),
        ("," * 1000, []),
        ("x" * 100, []),
    ],
)
def test_accept_language(header: str, expected: list[str]) -> None:
    assert accept_languages(header) == expected


@pytest.mark.parametrize(
    ("cookie", "header", "default", "expected"),
    [
        (None, "en-US,en;q=0.9", "vi", "en"),
        (None, "vi-VN", "en", "vi"),
        (None, "fr, de", "vi", "vi"),
        (None, "fr, de", "en", "en"),
        (None, "", "vi", "vi"),
        ("en", "vi", "vi", "en"),
        ("klingon", "vi", "en", "vi"),
    ],
)
def test_choose_language(cookie: str | None, header: str, default: str, expected: str) -> None:
    cookies = {"lang": cookie} if cookie else {}
    assert choose_language(cookies, header, default) == expected

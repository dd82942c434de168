"""A real browser for the console's tests: Debian's Chromium driven by Playwright.

Playwright is told the path of the system's Chromium (``executable_path``); it never downloads
a browser. Running as root (CI) needs ``--no-sandbox``; the audible alarm is allowed to start
without a click (``--autoplay-policy``), as a duty officer's browser would be set up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu"]


def find_chromium() -> str | None:
    """The system Chromium's path (``TUQUAN_CHROMIUM`` overrides), or None."""
    forced = os.environ.get("TUQUAN_CHROMIUM")
    if forced:
        return forced if os.access(forced, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "Debian's chromium is not installed (scripts/setup.sh --tests installs it)"
    return None


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """A launched Playwright Chromium browser (``playwright.sync_api.Browser``)."""
    from playwright.sync_api import sync_playwright

    path = find_chromium()
    assert path is not None, missing_reason()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=ARGS, **launch)
        try:
            yield browser
        finally:
            browser.close()

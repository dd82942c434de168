"""A real browser for the console's tests: Debian's Chromium driven by Playwright.

Playwright is told the path of the system's Chromium (``executable_path``); it never downloads
a browser. Running as root (CI) needs ``--no-sandbox``; the audible alarm is allowed to start
without a click (``--autoplay-policy``), as a duty officer's browser would be set up.

Also what the console's browser tests do on its pages: ``new_context`` (a fresh profile in a
language, 1280x800), ``log_in``, ``live`` (the page's stream is connected), ``post`` (a form
POST from the page's own script, with or without its CSRF token), ``screenshot`` (into the
folder ``TUQUAN_SCREENSHOTS`` names, if any) and ``AUTOPLAY_POLICY`` (an init script that keeps
the sound off until the page is used, as a browser's autoplay policy does). Playwright is
imported only where it is used, so ``missing_reason`` works without it.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

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


# -- on the console's pages ----------------------------------------------------------------

WAIT_MS = 30_000  # Playwright's waits: generous, the machine may be loaded
VIEWPORT = {"width": 1280, "height": 800}
TIMEZONE = "Asia/Ho_Chi_Minh"  # the commune's clock, for the times the pages show
SCREENSHOTS_ENV = "TUQUAN_SCREENSHOTS"
MAX_PNG_BYTES = 200_000  # heavier screenshots are saved with a palette of 256 colours

# (path, urlencoded body, CSRF token or null) -> the status after redirects.
POST = """async ([path, body, token]) => {
  const headers = {"Content-Type": "application/x-www-form-urlencoded"};
  if (token) { headers["X-CSRF-Token"] = token; }
  const response = await fetch(path, {method: "POST", headers, body, credentials: "same-origin"});
  return response.status;
}"""

# What a browser's autoplay policy does, which headless Chromium does not: an AudioContext
# stays suspended until the person has used this page (a click or a key on it; the click that
# logged in was on the page before).
AUTOPLAY_POLICY = """
(() => {
  let used = false;
  for (const type of ["pointerdown", "keydown"]) {
    addEventListener(type, (event) => { used = used || event.isTrusted; }, true);
  }
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    constructor() { super(); this.allowed = false; }
    get state() { return this.allowed ? super.state : "suspended"; }
    resume() {
      const was = this.state;
      this.allowed = this.allowed || used;
      return super.resume().then(() => {
        if (this.state !== was) { this.dispatchEvent(new Event("statechange")); }
      });
    }
  };
})();
"""


def new_context(browser: Browser, base_url: str, locale: str = "vi-VN") -> BrowserContext:
    """A fresh browser profile on the console; ``locale`` is what its Accept-Language asks."""
    context = browser.new_context(
        base_url=base_url, viewport=VIEWPORT, locale=locale, timezone_id=TIMEZONE
    )
    context.set_default_timeout(WAIT_MS)
    return context


def log_in(context: BrowserContext, name: str, password: str, path: str = "/") -> Page:
    """A new page, logged in through the login form, on ``path``."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(f"/login?next={path}")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login-button")
    expect(page.locator("body")).to_have_attribute("data-user", name, timeout=WAIT_MS)
    return page


def live(page: Page) -> None:
    """Wait until the page's live stream is connected."""
    from playwright.sync_api import expect

    expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=WAIT_MS)


def post(page: Page, path: str, body: str = "", *, token: bool = True) -> int:
    """A POST from the page's script, with the page's CSRF token (``token=False``: none)."""
    csrf = page.get_attribute('meta[name="csrf-token"]', "content") if token else None
    status: int = page.evaluate(POST, [path, body, csrf])
    return status


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path | None:
    """``console-<name>.png`` in the folder ``TUQUAN_SCREENSHOTS`` names (None without it)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return None
    png = page.screenshot(full_page=full_page, animations="disabled")
    if len(png) > MAX_PNG_BYTES:
        from PIL import Image

        picture = Image.open(io.BytesIO(png)).convert("RGB").quantize(256)
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=True)
        png = out.getvalue()
    path = Path(folder) / f"console-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path

"""The police console in a real browser (Debian's Chromium, driven by Playwright), on a whole
station of real processes (``browser_station``): Mosquitto, ``tuquan console`` and the default
simulated hub ``tuquan run --sim``, enrolled both ways.

One station serves the module; each test has its own browser context (its own cookies) and
makes, where it can, the situation it needs (an open panic, no open incident...), so the tests
read in order but do not lean on each other's leftovers.

With ``TUQUAN_SCREENSHOTS`` naming a folder, the tests also save the screenshots the docs use
there (``TUQUAN_SCREENSHOTS=docs/img``); without it, no file is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from browser_station import HUB, OPERATOR, OTHER_HUB, PASSWORD, VIEWER, Station

from console.i18n import load_catalogs
from console.labels import ACTIONS, OUTCOMES
from testkit import browser as browser_kit
from testkit.browser import (
    AUTOPLAY_POLICY,
    WAIT_MS,
    chromium,
    live,
    missing_reason,
    new_context,
    post,
    screenshot,
)
from testkit.waiting import wait_until

REASON = missing_reason()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect  # noqa: E402

CATALOGS = load_catalogs()
MARKER = "window.__notReloaded"

SNAPSHOT_LOADED = """() => {
  const img = document.querySelector("img.snapshot");
  return img !== null && img.complete && img.naturalWidth > 0;
}"""

expect.set_options(timeout=WAIT_MS)


def vi(message: str) -> str:
    return str(CATALOGS["vi"].gettext(message))


def en(message: str) -> str:
    return str(CATALOGS["en"].gettext(message))


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    st = Station(tmp_path_factory.mktemp("station"))
    try:
        st.start()
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser, station: Station) -> Iterator[BrowserContext]:
    station.ensure_hub()
    ctx = new_context(browser, station.url)
    try:
        yield ctx
    finally:
        ctx.close()


# -- helpers -----------------------------------------------------------------------------


def log_in(context: BrowserContext, name: str = OPERATOR, path: str = "/") -> Page:
    return browser_kit.log_in(context, name, PASSWORD, path)


def number(page: Page, selector: str, attribute: str) -> int:
    return int(page.get_attribute(selector, attribute) or "0")


def rows(page: Page, kind: str, hub: str = HUB, state: str | None = None) -> Locator:
    where = f'tr.alert-row[data-hub="{hub}"][data-kind="{kind}"]'
    return page.locator(where + (f'[data-state="{state}"]' if state else ""))


def alert_id(row: Locator) -> int:
    return int(row.get_attribute("data-alert-id") or "0")


def close_open_incidents(page: Page) -> None:
    """Close the hub's open alarm and detection alerts, so the next press or walk opens an
    alert of its own (within 120 s, one would join the hub's open incident)."""
    page.goto("/")
    for row in page.locator(f'tr.alert-row[data-hub="{HUB}"]').all():
        if row.get_attribute("data-priority") in ("0", "2"):
            status = post(page, f"/alerts/{alert_id(row)}/close", "outcome=test&note=test+run")
            assert status == 200, status
    page.reload()
    for priority in ("0", "2"):
        selector = f'tr.alert-row[data-hub="{HUB}"][data-priority="{priority}"]'
        expect(page.locator(selector)).to_have_count(0)


def new_panic(station: Station, page: Page) -> int:
    """The id of a new (unacknowledged) panic alert of the hub, pressing panic-1 if need be;
    the siren is sounding."""
    page.goto("/")
    found = rows(page, "panic", state="new")
    if found.count() == 0 or not station.siren_sounding():
        close_open_incidents(page)
        station.press_panic()
    expect(found).to_have_count(1)
    wait_until(station.siren_sounding, 30, "the siren sounding")
    return alert_id(found)


NAV = {  # the links every page has, by their catalog msgid
    "#nav-queue": "Alert queue",
    "#nav-hubs": "Hubs",
    "#nav-history": "History",
}


def nav_texts(page: Page) -> dict[str, str]:
    return {name: page.locator(name).inner_text().strip() for name in NAV}


# -- the tests ---------------------------------------------------------------------------


def test_a_panic_appears_on_an_open_queue_without_a_reload_and_sounds(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context)
    close_open_incidents(page)
    live(page)
    page.evaluate(f"{MARKER} = true")
    refreshed = number(page, "body", "data-refreshed")
    notices = number(page, "#live", "data-notices")
    expect(page.locator("#sound")).to_have_attribute("data-state", "idle")

    station.sim("press", "panic-1")
    station.sim("release", "panic-1")

    row = rows(page, "panic", state="new")
    expect(row).to_have_count(1)
    assert page.evaluate(MARKER) is True, "the page was loaded again"
    assert number(page, "body", "data-refreshed") > refreshed
    assert number(page, "#live", "data-notices") > notices
    expect(row.locator(".alert-kind a.alert-link")).to_have_text(vi("Panic"))
    expect(row).to_have_attribute("data-priority", "0")
    assert number(page, "body", "data-alarms") >= 1
    expect(page.locator("#sound")).to_have_attribute("data-state", "sounding")
    expect(page.locator("#sound-enable")).to_be_hidden()
    screenshot(page, "queue")


def test_a_browser_that_keeps_sound_off_offers_the_button_and_a_click_starts_it(
    station: Station, browser: Browser, context: BrowserContext
) -> None:
    new_panic(station, log_in(context))
    strict = new_context(browser, station.url)
    try:
        strict.add_init_script(AUTOPLAY_POLICY)
        page = log_in(strict)
        expect(page.locator("#sound")).to_have_attribute("data-state", "blocked")
        expect(page.locator("#sound-enable")).to_be_visible()
        page.click("#sound-enable")
        expect(page.locator("#sound")).to_have_attribute("data-state", "sounding")
        expect(page.locator("#sound-enable")).to_be_hidden()
    finally:
        strict.close()


def test_an_operator_acknowledges_and_silences_the_siren_and_the_audit_names_them(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context)
    panic = new_panic(station, page)
    live(page)
    expect(page.locator("#sound")).to_have_attribute("data-state", "sounding")

    page.click(f"#alert-{panic} .ack-form .ack-button")
    expect(page.locator(f"#alert-{panic}")).to_have_attribute("data-state", "acknowledged")
    expect(page.locator(f"#alert-{panic} .alert-state")).to_contain_text(OPERATOR)
    expect(page.locator("#sound")).to_have_attribute("data-state", "idle")
    assert station.siren_sounding(), "acknowledging is not silencing"

    page.click(f"#alert-{panic} .alert-link")
    expect(page.locator("#alert")).to_have_attribute("data-alert-id", str(panic))
    expect(page.locator("#alert-ack-by")).to_contain_text(OPERATOR)
    page.click("#silence-button")
    expect(page.locator("#message")).to_have_attribute("data-kind", "ok")
    command = page.locator('tr.command-row[data-name="silence"]')
    expect(command).to_have_count(1)
    live(page)
    # The hub's signed cmd_result comes back through the desk; the page shows it live.
    expect(command).to_have_attribute("data-ok", "true")
    expect(command.locator(".command-result")).to_contain_text(vi("done"))
    expect(command.locator(".command-operator")).to_have_text(OPERATOR)

    status = station.sim("status")
    assert status["sounding"] == [] and status["outputs"]["siren"] is False, status

    trail = page.locator("#audit-trail li.audit-record")
    expect(trail.and_(page.locator('[data-action="acknowledged"]'))).to_have_attribute(
        "data-actor", OPERATOR
    )
    sent = trail.and_(page.locator('[data-action="command_sent"]'))
    expect(sent).to_have_attribute("data-actor", OPERATOR)
    expect(sent.locator(".audit-action")).to_have_text(vi(ACTIONS["command_sent"]))

    # Closed with an outcome and a note, by the same operator.
    page.select_option("#close-outcome", "test")
    page.fill("#close-note", "Diễn tập: thử nút báo động")
    page.click("#close-button")
    expect(page.locator("#alert-state")).to_have_attribute("data-state", "closed")
    expect(page.locator("#alert-closed-by")).to_contain_text(OPERATOR)
    expect(page.locator("#alert-outcome")).to_have_text(vi(OUTCOMES["test"]))
    expect(page.locator("#close-form")).to_have_count(0)
    closed = trail.and_(page.locator('[data-action="closed"]'))
    expect(closed).to_have_attribute("data-actor", OPERATOR)


def test_a_person_walking_past_the_camera_shows_its_snapshot(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context)
    close_open_incidents(page)
    live(page)
    wait_until(lambda: station.camera_frames() >= 10, 30, "cam-1 playing")
    walk = station.sim("camera", "cam-1", "walk", "--seconds", "8")
    assert walk["ok"] is True, walk

    row = rows(page, "person")
    expect(row).to_have_count(1, timeout=WAIT_MS + 8_000)
    expect(row).to_have_attribute("data-priority", "2")
    page.click(f"#{row.get_attribute('id')} .alert-link")
    expect(page.locator("#alert-kind")).to_have_text(vi("Person detected"))

    # The JPEG follows its event on MQTT; the pictures section shows it once it is stored.
    def picture_shown() -> bool:
        if page.locator("img.snapshot").count() == 0:
            page.reload()
            return False
        return True

    wait_until(picture_shown, 30, "the snapshot on the alert page", step=1)
    page.wait_for_function(SNAPSHOT_LOADED)
    picture = page.locator("img.snapshot").first.get_attribute("data-event-id")
    person = page.locator('tr.event-row[data-kind="person"]').first
    assert person.get_attribute("data-event-id") == picture
    # The JPEG served is the event's: the crop its data.snapshot_box says.
    box = json.loads(person.locator("pre").text_content() or "{}")["snapshot_box"]
    size = page.evaluate("() => { const i = document.querySelector('img.snapshot');"
                         " return [i.naturalWidth, i.naturalHeight]; }")  # fmt: skip
    assert size == [box[2] - box[0], box[3] - box[1]], (size, box)

    # What the docs show: the picture, the hub answering a ping, and the audit trail.
    page.click("#ack-button")
    expect(page.locator("#alert-state")).to_have_attribute("data-state", "acknowledged")
    page.click("#ping-button")
    expect(page.locator('tr.command-row[data-name="ping"]')).to_have_attribute("data-ok", "true")
    trail = page.locator("#audit-trail li.audit-record")
    expect(trail.and_(page.locator('[data-action="acknowledged"]'))).to_have_count(1)
    page.wait_for_function(SNAPSHOT_LOADED)
    screenshot(page, "alert", full_page=True)


def test_a_killed_hub_raises_communication_trouble_and_its_return_restores_it(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context)
    live(page)
    page.evaluate(f"{MARKER} = true")
    trouble = rows(page, "comm_trouble")
    expect(trouble).to_have_count(0)

    station.kill_hub()
    # Its last will (1.5 x the 5 s keepalive), or else its 20 s window, raises the trouble.
    expect(trouble).to_have_count(1)
    expect(trouble).to_have_attribute("data-priority", "1")
    expect(trouble.locator(".alert-kind")).to_have_text(vi("Communication trouble"))
    assert page.evaluate(MARKER) is True, "the page was loaded again"
    trouble_id = alert_id(trouble)

    station.ensure_hub()
    # Restored: closed by the desk, so it leaves the queue (still without a reload).
    expect(page.locator(f"#alert-{trouble_id}")).to_have_count(0)
    assert page.evaluate(MARKER) is True, "the page was loaded again"
    page.goto(f"/alerts/{trouble_id}")
    expect(page.locator("#alert-state")).to_have_attribute("data-state", "closed")
    expect(page.locator("#alert-closed-by")).to_contain_text("system")
    expect(page.locator("#alert-outcome")).to_have_text(vi(OUTCOMES["restored"]))
    restore = page.locator('tr.event-row[data-kind="comm_trouble"]')
    expect(restore).to_have_count(2)  # the trouble and its restore


def test_a_viewer_sees_no_actions_and_their_silence_is_refused(
    station: Station, browser: Browser, context: BrowserContext
) -> None:
    operator = log_in(context)
    panic = new_panic(station, operator)

    viewer_context = new_context(browser, station.url)
    try:
        page = log_in(viewer_context, VIEWER)
        expect(page.locator("body")).to_have_attribute("data-role", "viewer")
        expect(page.locator(f"#alert-{panic}")).to_have_count(1)
        expect(page.locator(".ack-button")).to_have_count(0)
        page.goto(f"/alerts/{panic}")
        expect(page.locator("#alert")).to_have_attribute("data-alert-id", str(panic))
        for button in ("#ack-button", "#silence-button", "#snapshot-button", "#ping-button"):
            expect(page.locator(button)).to_have_count(0)
        expect(page.locator("#close-form")).to_have_count(0)

        # From the page's own script, with the session's CSRF token: the role refuses it.
        assert post(page, f"/alerts/{panic}/commands/silence", "") == 403
        assert post(page, f"/alerts/{panic}/ack", "") == 403
    finally:
        viewer_context.close()

    assert station.siren_sounding(), "the viewer's silence reached the hub"
    operator.goto(f"/alerts/{panic}")
    expect(operator.locator("#alert-state")).to_have_attribute("data-state", "new")
    expect(operator.locator("#no-commands")).to_be_visible()
    expect(operator.locator(f'#audit-trail li[data-actor="{VIEWER}"]')).to_have_count(0)


def test_a_post_without_the_csrf_token_is_refused(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context)
    panic = new_panic(station, page)
    page.goto(f"/alerts/{panic}")
    assert post(page, f"/alerts/{panic}/ack", "", token=False) == 403
    assert post(page, f"/alerts/{panic}/commands/silence", "", token=False) == 403
    wrong = page.evaluate(
        """async (path) => (await fetch(path, {method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: "csrf_token=forged"})).status""",
        f"/alerts/{panic}/ack",
    )
    assert wrong == 403
    page.reload()
    expect(page.locator("#alert-state")).to_have_attribute("data-state", "new")
    expect(page.locator("#no-commands")).to_be_visible()
    assert station.siren_sounding()

    # The same request with the page's token goes through: the refusals were the token's.
    assert post(page, f"/alerts/{panic}/ack", "") == 200
    page.reload()
    expect(page.locator("#alert-state")).to_have_attribute("data-state", "acknowledged")


def test_the_hubs_board_and_its_map_show_the_live_hub_and_the_silent_one(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context, path="/hubs")
    hub = page.locator(f'tr.hub-row[data-hub="{HUB}"]')
    expect(hub).to_have_attribute("data-status", "online")
    expect(hub.locator(".hub-status")).to_have_text(vi("online"))
    expect(hub.locator('.hub-cameras [data-camera="cam-1"]')).to_have_text("cam-1: open")
    expect(hub.locator(".hub-sensors")).to_contain_text("panic-1")
    expect(hub.locator(".hub-sensors")).to_contain_text("smoke-1")
    expect(hub.locator(".hub-battery")).to_contain_text(" V")
    other = page.locator(f'tr.hub-row[data-hub="{OTHER_HUB}"]')
    expect(other).to_have_attribute("data-status", "never")

    dots = page.locator("svg#hub-map g.hub-dot")
    expect(dots).to_have_count(2)
    on = page.locator(f'svg#hub-map g.hub-dot[data-hub="{HUB}"]')
    off = page.locator(f'svg#hub-map g.hub-dot[data-hub="{OTHER_HUB}"]')
    expect(on).to_have_attribute("data-status", "online")
    expect(off).to_have_attribute("data-colour", "never")
    assert on.get_attribute("data-colour") != off.get_attribute("data-colour")
    screenshot(page, "hubs", full_page=True)


def test_the_history_finds_the_closed_alerts_and_exports_them(
    station: Station, context: BrowserContext
) -> None:
    page = log_in(context, path="/history")
    page.select_option("#f-hub", HUB)
    page.select_option("#f-state", "closed")
    page.click("#history-search")
    found = page.locator("tr.history-row")
    expect(found.first).to_be_visible()
    assert found.count() >= 1
    for state in found.evaluate_all("rows => rows.map(r => r.dataset.state + ' ' + r.dataset.hub)"):
        assert state == f"closed {HUB}", state
    ids = {r.get_attribute("data-alert-id") for r in found.all()}

    href = page.get_attribute("#history-csv", "href")
    assert href and f"hub={HUB}" in href
    response = context.request.get(href)
    assert response.status == 200 and "text/csv" in response.headers["content-type"]
    table = list(csv.DictReader(io.StringIO(response.text())))
    assert {row["id"] for row in table} >= ids, response.text()
    assert all(row["hub"] == HUB and row["state"] == "closed" for row in table), table
    screenshot(page, "history")


def test_the_vietnamese_and_english_pages_both_render(
    station: Station, browser: Browser, context: BrowserContext
) -> None:
    # A Vietnamese browser: the login page and the pages after it speak Vietnamese.
    page = context.new_page()
    page.goto("/login")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("#login-button")).to_have_text(vi("Log in"))
    assert page.title() == f"{vi('Log in')} · {vi('Commune police console')}"
    screenshot(page, "login")
    page.close()
    page = log_in(context)
    nav = {name: vi(text) for name, text in NAV.items()}
    assert nav_texts(page) == nav

    # The switch to English on the same page, and back.
    page.click("#lang-en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert nav_texts(page) == {name: en(text) for name, text in NAV.items()}
    assert page.title().endswith(en("Commune police console"))
    page.click("#lang-vi")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    assert nav_texts(page) == nav

    # An English browser is answered in English from its first page.
    english = new_context(browser, station.url, locale="en-GB")
    try:
        page = english.new_page()
        page.goto("/login")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#login-button")).to_have_text(en("Log in"))
        page = log_in(english)
        expect(page.locator("body")).to_have_attribute("data-lang", "en")
        english_nav = nav_texts(page)
        assert english_nav == {name: en(text) for name, text in NAV.items()}
        assert all(english_nav[name] != nav[name] for name in NAV), (english_nav, nav)
        new_panic(station, page)
        live(page)
        screenshot(page, "queue-en")
    finally:
        english.close()


def test_the_station_stops_cleanly_on_sigterm(station: Station) -> None:
    """Last: SIGTERM ends the hub and the console with status 0, the console's receiver and
    desk stopped too (not only its web server)."""
    assert station.hub.stop() == 0, station.hub.log_tail()
    assert station.console.stop() == 0, station.console.log_tail()
    assert "receiver tuquan-receiver-demo stopped" in station.console.log_tail(20_000)

"""The console's pages against the real app on uvicorn: the queue, an alert with its events,
pictures, audit trail and commands, the hubs board and map, both languages, the security
headers, and the live stream."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_kit import Browser, LiveConsole, LocalDesk, live_console, make_users

from commune.snapshots import SNAPSHOT_DIRNAME
from testkit.waiting import wait_until

JPEG = b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[LiveConsole, LocalDesk]]:
    with live_console(tmp_path) as (live, desk):
        make_users(live.accounts)
        yield live, desk


@pytest.fixture
def operator(console: tuple[LiveConsole, LocalDesk]) -> Iterator[Browser]:
    client = console[0].client()
    assert client.login("op1").status_code == 303
    yield client
    client.close()


def rows(html: str, cls: str, attr: str) -> list[str]:
    return re.findall(rf'class="{cls}[^"]*"[^>]*?{attr}="([^"]*)"', html, re.S)


def test_the_queue_orders_alarms_first_then_new_before_acknowledged(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    trouble = desk.raise_alert("cho-1", "tamper", "tamper-1")
    old_alarm = desk.raise_alert("truong-2", "panic")
    desk.acknowledge(old_alarm.id, "op1")
    new_alarm = desk.raise_alert("cho-1", "fire", "smoke-1")
    closed = desk.raise_alert("cho-9", "panic")
    desk.close(closed.id, "op1", "test")

    page = operator.get("/", headers={"accept-language": "en"})
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'id="alert-(\d+)" class="alert-row', page.text)]
    assert ids == [new_alarm.id, old_alarm.id, trouble.id]
    assert "Chợ An Đông" in page.text  # the hub's configured name
    # Only the new ones have an acknowledge button.
    assert len(re.findall(r'class="ack-button"', page.text)) == 2


def test_the_alert_page_shows_events_pictures_audit_and_the_commands_result(
    console: tuple[LiveConsole, LocalDesk], operator: Browser, tmp_path: Path
) -> None:
    live, desk = console
    person = desk.store("cho-1", "person", "cam-1", data={"zone": "gate"})
    snapshot_dir = tmp_path / "data" / SNAPSHOT_DIRNAME / "cho-1"
    snapshot_dir.mkdir(parents=True)
    (snapshot_dir / f"{person.id}.jpg").write_bytes(JPEG)
    panic = desk.store("cho-1", "panic", "panic-1")
    (alert_id,) = set(desk.follow())

    page = operator.get(f"/alerts/{alert_id}", headers={"accept-language": "en"}).text
    assert rows(page, "event-row", "data-event-id") == [person.id, panic.id]
    assert f'src="/snapshots/cho-1/{person.id}.jpg"' in page
    assert f'name="event_id" value="{person.id}"' in page  # the picture can be asked again
    assert rows(page, "audit-record", "data-action") == ["opened", "joined"]
    assert 'id="no-commands"' in page

    token = operator.csrf(f"/alerts/{alert_id}")
    sent = operator.post(f"/alerts/{alert_id}/commands/silence", data={"csrf_token": token})
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=sent")
    (record,) = desk.commands_sent
    assert (record.hub, record.name, record.operator, record.alert_id) == (
        "cho-1",
        "silence",
        "op1",
        alert_id,
    )
    waiting = operator.get(sent.headers["location"], headers={"accept-language": "en"}).text
    assert 'id="message"' in waiting and "waiting for the hub" in waiting

    desk.answer(record.id, {"ok": True, "cmd": "silence", "silenced": ["siren"]})
    done = operator.get(f"/alerts/{alert_id}", headers={"accept-language": "en"}).text
    row = re.search(r'<tr class="command-row".*?</tr>', done, re.S)
    assert row is not None
    assert 'data-ok="true"' in row.group(0) and "siren" in row.group(0)
    assert "command_sent" in rows(done, "audit-record", "data-action")

    operator.post(
        f"/alerts/{alert_id}/commands/snapshot", data={"csrf_token": token, "event_id": person.id}
    )
    operator.post(f"/alerts/{alert_id}/commands/ping", data={"csrf_token": token})
    assert [(c.name, c.args) for c in desk.commands_sent[1:]] == [
        ("snapshot", {"id": person.id}),
        ("ping", {}),
    ]


def test_an_alert_without_a_picture_says_so(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    page = operator.get(f"/alerts/{alert.id}").text
    assert 'id="no-picture"' in page
    assert 'id="snapshot-button"' not in page


def test_a_command_the_desk_cannot_send_shows_why(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    desk.refuse_commands = True
    token = operator.csrf("/")
    response = operator.post(
        f"/alerts/{alert.id}/commands/silence",
        data={"csrf_token": token},
        headers={"accept-language": "en"},
    )
    assert response.status_code == 502
    assert "could not be sent" in response.text and "no connection" in response.text


def test_closing_from_the_page_with_an_outcome_and_a_note(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    token = operator.csrf("/")
    bad = operator.post(f"/alerts/{alert.id}/close", data={"csrf_token": token, "outcome": "maybe"})
    assert bad.status_code == 400
    long_note = operator.post(
        f"/alerts/{alert.id}/close",
        data={"csrf_token": token, "outcome": "real", "note": "x" * 2001},
    )
    assert long_note.status_code == 400
    done = operator.post(
        f"/alerts/{alert.id}/close",
        data={"csrf_token": token, "outcome": "false_alarm", "note": "trẻ con bấm nhầm"},
    )
    assert done.status_code == 303
    closed = desk.alerts.get(alert.id)
    assert closed is not None
    assert (closed.state, closed.outcome, closed.note, closed.closed_by) == (
        "closed",
        "false_alarm",
        "trẻ con bấm nhầm",
        "op1",
    )
    again = operator.post(
        f"/alerts/{alert.id}/close", data={"csrf_token": token, "outcome": "real"}
    )
    assert again.status_code == 409
    assert operator.get("/alerts/999999").status_code == 404
    assert operator.get("/alerts/abc").status_code == 400


def test_snapshots_are_served_and_nothing_else_is(
    console: tuple[LiveConsole, LocalDesk], operator: Browser, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    hub_dir = data / SNAPSHOT_DIRNAME / "cho-1"
    hub_dir.mkdir(parents=True)
    (hub_dir / "ev1.jpg").write_bytes(JPEG)
    (hub_dir / "notjpeg.jpg").write_bytes(b"<html>not a picture</html>")
    (data / "secret.jpg").write_bytes(JPEG)  # beside the snapshots, not in them
    os.symlink(data / "secret.jpg", hub_dir / "link.jpg")
    os.symlink(data, data / SNAPSHOT_DIRNAME / "up")

    good = operator.get("/snapshots/cho-1/ev1.jpg")
    assert good.status_code == 200 and good.content == JPEG
    assert good.headers["content-type"] == "image/jpeg"
    for path in (
        "/snapshots/cho-1/notjpeg.jpg",
        "/snapshots/cho-1/link.jpg",
        "/snapshots/up/secret.jpg",
        "/snapshots/cho-1/..%2F..%2Fsecret.jpg",
        "/snapshots/cho-1/%2e%2e.jpg",
        "/snapshots/..%2Fcho-1/ev1.jpg",
        "/snapshots/cho-1/../../receiver.sqlite3",
        "/snapshots/cho-1/ev1.png",
        "/snapshots/CHO-1/ev1.jpg",
        "/snapshots/cho-1/missing.jpg",
        "/snapshots/cho-1/" + "a" * 300 + ".jpg",
    ):
        response = operator.get(path)
        assert response.status_code == 404, path
        assert response.content != JPEG
    # Not logged in: not even the good one.
    stranger = Browser(console[0].url)
    try:
        assert stranger.get("/snapshots/cho-1/ev1.jpg").status_code == 303
    finally:
        stranger.close()


def test_the_hubs_board_and_map(console: tuple[LiveConsole, LocalDesk], operator: Browser) -> None:
    live, desk = console
    desk.hubs.record_status("cho-1", "online")
    desk.hubs.record_health(
        "cho-1",
        {
            "outbox": {"pending": 3, "undelivered_alarm": 1},
            "inputs": {"panic-1": True, "tamper-1": False, "door-1": "fault"},
            "cameras": {"cam-1": {"state": "running"}},
            "buses": {
                "bus0": {"nodes": {"smoke-1": {"battery_mv": 2950}, "fob-1": {"battery_mv": 2710}}},
                "bus1": {"nodes": {"fob-2": {"battery_mv": "lots"}}},
            },
        },
        verified=True,
    )
    desk.hubs.record_status("truong-2", "online")
    desk.raise_alert("truong-2", "tamper", "tamper-1")
    desk.hubs.record_health("stray-9", {"buses": [1, 2], "inputs": "nonsense"}, verified=None)

    page = operator.get("/hubs", headers={"accept-language": "en"}).text
    assert rows(page, "hub-row", "data-hub") == ["cho-1", "stray-9", "truong-2"]
    cho = re.search(r'<tr id="hub-cho-1".*?</tr>', page, re.S)
    assert cho is not None
    row = cho.group(0)
    assert 'data-status="online"' in row
    assert "3 waiting" in row and "1 alarms not delivered" in row
    assert "2.71 V" in row  # the lowest node battery
    assert "cam-1: running" in row
    assert "panic-1 (active)" in row and "door-1 (fault)" in row and "smoke-1" in row

    found = re.findall(
        r'<g class="hub-dot (\S+)" data-hub="([^"]+)"[^>]*>\s*<a[^>]*>\s*'
        r'<circle cx="([\d.]+)" cy="([\d.]+)"',
        page,
    )
    dots = {hub: (float(x), float(y), colour) for colour, hub, x, y in found}
    assert set(dots) == {"cho-1", "truong-2"}  # stray-9 has no coordinates
    (cx, cy, colour), (tx, ty, tcolour) = dots["cho-1"], dots["truong-2"]
    assert tx > cx and ty < cy  # truong-2 is east and north of the market
    assert (colour, tcolour) == ("ok", "trouble")
    for x, y, _ in dots.values():
        assert 0 <= x <= 800 and 0 <= y <= 500
    assert 'id="not-on-map"' in page and "stray-9" in page

    desk.hubs.record_status("truong-2", "offline")
    later = operator.get("/hubs").text
    assert re.search(r'class="hub-dot offline" data-hub="truong-2" data-status="offline"', later)
    assert re.search(r'<tr id="hub-truong-2" class="hub-row status-offline"', later)


def test_both_languages_render(console: tuple[LiveConsole, LocalDesk], operator: Browser) -> None:
    live, desk = console
    desk.raise_alert()
    vi = operator.get("/", headers={"accept-language": "vi-VN,vi;q=0.9,en;q=0.5"})
    assert '<html lang="vi">' in vi.text and "Báo động khẩn cấp" in vi.text
    assert "Hàng đợi cảnh báo" in vi.text and vi.headers["content-language"] == "vi"
    en = operator.get("/", headers={"accept-language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in en.text and ">Panic<" in en.text and "Alert queue" in en.text
    assert en.headers["content-language"] == "en"
    # No preference we speak: the config's language (Vietnamese by default).
    assert '<html lang="vi">' in operator.get("/", headers={"accept-language": "fr"}).text
    assert '<html lang="vi">' in operator.get("/").text

    # The switcher's cookie wins over the browser's header.
    switched = operator.get("/lang/en?next=%2Fhubs")
    assert switched.status_code == 303 and switched.headers["location"] == "/hubs"
    assert operator.cookies["lang"] == "en"
    again = operator.get("/hubs", headers={"accept-language": "vi"})
    assert '<html lang="en">' in again.text
    assert operator.get("/lang/fr").status_code == 404
    outside = operator.get("/lang/vi?next=https://evil.example/")
    assert outside.headers["location"] == "/"


def test_the_configured_language_is_the_default(tmp_path: Path) -> None:
    with live_console(tmp_path, language="en") as (live, desk):
        make_users(live.accounts)
        client = live.client()
        try:
            login = client.get("/login")
            assert '<html lang="en">' in login.text and "User name" in login.text
            vi = client.get("/login", headers={"accept-language": "vi"})
            assert "Tên đăng nhập" in vi.text
        finally:
            client.close()


def test_pages_carry_security_headers_and_no_inline_script(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    for path in ("/", f"/alerts/{alert.id}", "/hubs", "/history", "/login", "/api/v1/hubs"):
        response = operator.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        if path.startswith("/api/"):
            continue
        assert re.findall(r"<script(?![^>]*\bsrc=)", response.text) == []
        assert " on" not in " ".join(re.findall(r"<[^>]+\son\w+=", response.text))
        # Every asset is this site's own.
        for url in re.findall(r'(?:src|href)="([^"]+)"', response.text):
            assert url.startswith(("/", "#")), url
    for asset in ("/static/console.css", "/static/live.js", "/static/alarm.js"):
        assert operator.get(asset).status_code == 200


def test_an_oversized_body_is_refused(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    token = operator.csrf("/")
    response = operator.post(
        f"/alerts/{alert.id}/close",
        content=f"csrf_token={token}&outcome=real&note={'x' * 70_000}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    still = desk.alerts.get(alert.id)
    assert still is not None and still.state == "new"


class Stream:
    """``/stream`` read on a thread: each server-sent event as (event, data)."""

    def __init__(self, url: str, cookie: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status = 0
        self.error: Exception | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._thread = threading.Thread(target=self._read, args=(url, cookie), daemon=True)
        self._thread.start()

    def _read(self, url: str, cookie: str) -> None:
        try:
            with self._client.stream("GET", url, headers={"cookie": cookie}) as response:
                self.status = response.status_code
                name = ""
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        self.events.append((name, json.loads(line.split(":", 1)[1])))
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def test_the_stream_delivers_a_change_notice_with_the_alarm_count(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    cookie = f"tuquan_session={operator.cookies['tuquan_session']}"
    stream = Stream(f"{live.url}/stream", cookie)
    try:
        wait_until(lambda: stream.events, 30, "the stream's hello")
        assert stream.events[0] == ("hello", {"alarms": 0})
        assert stream.status == 200

        desk.store("cho-1", "panic")
        (alert_id,) = desk.follow()
        wait_until(lambda: len(stream.events) >= 2, 30, "the notice of the new alarm")
        assert stream.events[1] == (
            "notice",
            {"type": "alert", "id": alert_id, "action": "opened", "alarms": 1},
        )

        desk.acknowledge(alert_id, "op1")
        wait_until(lambda: len(stream.events) >= 3, 30, "the notice of the acknowledgement")
        assert stream.events[2][1]["action"] == "acknowledged"
        assert stream.events[2][1]["alarms"] == 0  # the browsers stop sounding
    finally:
        stream.close()


def test_stopping_the_console_ends_the_streams_cleanly(
    console: tuple[LiveConsole, LocalDesk], operator: Browser
) -> None:
    live, desk = console
    cookie = f"tuquan_session={operator.cookies['tuquan_session']}"
    stream = Stream(f"{live.url}/stream", cookie)
    try:
        wait_until(lambda: stream.events, 30, "the stream's hello")
        live.stop()
        assert stream.ended.wait(30)
        assert stream.error is None  # ended by the server, not cut off at the grace timeout
        assert not live.thread.is_alive()
    finally:
        stream.close()


def test_the_stream_needs_a_login(console: tuple[LiveConsole, LocalDesk]) -> None:
    live, _ = console
    response = httpx.get(f"{live.url}/stream", timeout=30)
    assert response.status_code == 303


def test_a_slow_stream_client_loses_old_notices_not_the_desk(
    console: tuple[LiveConsole, LocalDesk],
) -> None:
    live, desk = console
    notices = live.app.state.console.notices

    async def scenario() -> list[dict[str, Any]]:
        client = notices.subscribe()
        try:
            for i in range(500):
                notices.publish({"type": "alert", "id": i, "alarms": 1})
            return [client.get_nowait() for _ in range(client.qsize())]
        finally:
            notices.unsubscribe(client)

    got = asyncio.run(scenario())
    assert 0 < len(got) <= 100
    assert any(n["type"] == "changed" for n in got)  # told to reload what it shows
    assert got[-1]["id"] == 499

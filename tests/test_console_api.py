"""``/api/v1`` on a real uvicorn server: reading alerts, hubs and events, acting on alerts and
hubs with an API token, and bad input answered with a 4xx and a JSON reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_kit import STORES, LiveConsole, LocalDesk, live_console, store_param


@pytest.fixture(params=STORES)
def console(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveConsole, LocalDesk]]:
    with live_console(tmp_path, store_param(request)) as (live, desk):
        yield live, desk


@pytest.fixture
def api(console: tuple[LiveConsole, LocalDesk]) -> Iterator[httpx.Client]:
    live, _ = console
    token = live.accounts.add_token("province", "operator")
    with httpx.Client(
        base_url=f"{live.url}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


def ids(response: httpx.Response, key: str = "alerts") -> list[Any]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()[key]]


def test_alerts_open_in_queue_order_with_filters(
    console: tuple[LiveConsole, LocalDesk], api: httpx.Client
) -> None:
    _, desk = console
    trouble = desk.raise_alert("cho-1", "tamper", "tamper-1")
    alarm = desk.raise_alert("truong-2", "panic")
    closed = desk.raise_alert("hub-9", "fire", "smoke-1")
    desk.close(closed.id, "op1", "real")
    assert ids(api.get("/alerts")) == [alarm.id, trouble.id]
    assert ids(api.get("/alerts", params={"hub": "cho-1"})) == [trouble.id]
    assert ids(api.get("/alerts", params={"kind": "panic"})) == [alarm.id]
    desk.acknowledge(alarm.id, "op1")
    assert ids(api.get("/alerts", params={"state": "acknowledged"})) == [alarm.id]
    assert ids(api.get("/alerts", params={"all": "1"})) == [closed.id, alarm.id, trouble.id]
    assert ids(api.get("/alerts", params={"state": "closed"})) == [closed.id]
    assert ids(api.get("/alerts", params={"outcome": "real"})) == [closed.id]
    assert ids(api.get("/alerts", params={"all": 1, "limit": 1, "offset": 1})) == [alarm.id]
    assert ids(api.get("/alerts", params={"since": "2999-01-01T00:00:00Z"})) == []
    assert ids(api.get("/alerts", params={"until": "2000-01-01T00:00:00+07:00"})) == []


def test_an_alert_with_its_events_audit_and_commands(
    console: tuple[LiveConsole, LocalDesk], api: httpx.Client
) -> None:
    _, desk = console
    alert = desk.raise_alert("cho-1", "panic")
    sent = api.post(f"/hubs/cho-1/commands/silence?alert_id={alert.id}")
    assert sent.status_code == 200, sent.text
    command = sent.json()
    assert (command["name"], command["operator"], command["result"]) == (
        "silence",
        "token:province",
        None,
    )
    desk.answer(command["id"], {"ok": True, "silenced": ["siren"]})

    detail = api.get(f"/alerts/{alert.id}").json()
    assert detail["alert"]["id"] == alert.id
    assert [e["kind"] for e in detail["events"]] == ["panic"]
    assert detail["events"][0]["hub"] == "cho-1" and "payload" not in detail["events"][0]
    assert [r["action"] for r in detail["audit"]] == ["opened", "command_sent"]
    assert detail["commands"][0]["ok"] is True
    assert detail["commands"][0]["result"]["silenced"] == ["siren"]
    assert api.get("/alerts/123456").status_code == 404


def test_acknowledge_and_close(console: tuple[LiveConsole, LocalDesk], api: httpx.Client) -> None:
    _, desk = console
    alert = desk.raise_alert()
    acked = api.post(f"/alerts/{alert.id}/ack")
    assert acked.status_code == 200
    assert (acked.json()["state"], acked.json()["ack_by"]) == ("acknowledged", "token:province")
    assert api.post(f"/alerts/{alert.id}/ack").status_code == 200  # again: nothing changes
    closed = api.post(f"/alerts/{alert.id}/close", json={"outcome": "test", "note": "drill"})
    assert closed.status_code == 200 and closed.json()["note"] == "drill"
    again = api.post(f"/alerts/{alert.id}/close", json={"outcome": "test"})
    assert again.status_code == 409 and "closed" in again.json()["detail"]
    assert api.post(f"/alerts/{alert.id}/ack").status_code == 409
    assert api.post("/alerts/999/ack").status_code == 404
    actions = [(r.actor, r.action) for r in desk.audit.for_alert(alert.id)]
    assert actions == [
        ("system", "opened"),
        ("token:province", "acknowledged"),
        ("token:province", "closed"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "maybe"},
        {"outcome": "real", "note": "x" * 2001},
        {"outcome": "real", "extra": 1},
        {"note": "no outcome"},
        {"outcome": ["real"]},
        [],
        "real",
    ],
)
def test_a_bad_close_is_refused_with_its_reason(
    console: tuple[LiveConsole, LocalDesk], api: httpx.Client, body: object
) -> None:
    _, desk = console
    alert = desk.raise_alert()
    response = api.post(f"/alerts/{alert.id}/close", json=body)
    assert response.status_code == 422
    assert "detail" in response.json()
    still = desk.alerts.get(alert.id)
    assert still is not None and still.state == "new"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/events", {"limit": 1001}),
        ("/events", {"limit": 0}),
        ("/events", {"since": "yesterday"}),
        ("/events", {"until": "2026-02-30T00:00:00Z"}),
        ("/events", {"hub": "../etc"}),
        ("/events", {"hub": "A" * 10}),
        ("/events", {"kind": "x" * 40}),
        ("/alerts", {"limit": 10**30}),
        ("/alerts", {"offset": -1}),
        ("/alerts", {"state": "open"}),
        ("/alerts", {"zone": "z" * 65}),
        ("/alerts/0", {}),
        ("/alerts/99999999999999999999", {}),
        ("/alerts/nan", {}),
    ],
)
def test_bad_parameters_are_a_4xx_with_a_json_reason(
    api: httpx.Client, path: str, params: dict[str, Any]
) -> None:
    response = api.get(path, params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


def test_hubs(console: tuple[LiveConsole, LocalDesk], api: httpx.Client) -> None:
    _, desk = console
    desk.hubs.record_status("cho-1", "online")
    desk.hubs.record_health(
        "cho-1",
        {
            "buses": {"b": {"nodes": {"n": {"battery_mv": 3000}}}},
            "cameras": {"cam-1": {"state": "running"}},
        },
        True,
    )
    desk.raise_alert("cho-1", "panic")
    hubs = {h["hub"]: h for h in api.get("/hubs").json()["hubs"]}
    assert set(hubs) == {"cho-1", "truong-2"}
    cho = hubs["cho-1"]
    assert (cho["status"], cho["battery_mv"], cho["cameras"], cho["open_priority"]) == (
        "online",
        3000,
        {"cam-1": "running"},
        0,
    )
    assert cho["name"] == "Chợ An Đông" and cho["latitude"] == 10.757
    assert hubs["truong-2"]["status"] == "never"


def test_events_with_filters(console: tuple[LiveConsole, LocalDesk], api: httpx.Client) -> None:
    _, desk = console
    a = desk.store("cho-1", "panic", received_at="2026-05-01T10:00:00.000Z")
    b = desk.store("cho-1", "telemetry", "t", received_at="2026-05-01T11:00:00.000Z")
    c = desk.store("truong-2", "panic", received_at="2026-05-02T10:00:00.000Z")
    assert ids(api.get("/events"), "events") == [c.id, b.id, a.id]
    assert ids(api.get("/events", params={"hub": "cho-1"}), "events") == [b.id, a.id]
    assert ids(api.get("/events", params={"kind": "panic"}), "events") == [c.id, a.id]
    window = {"since": "2026-05-01T10:30:00Z", "until": "2026-05-02T10:00:00Z"}
    assert ids(api.get("/events", params=window), "events") == [b.id]
    assert ids(api.get("/events", params={"limit": 1}), "events") == [c.id]
    local = {"since": "2026-05-01T17:30:00+07:00"}  # 10:30 UTC
    assert ids(api.get("/events", params=local), "events") == [c.id, b.id]
    first = api.get("/events", params={"limit": 1}).json()["events"][0]
    assert first["received_at"] == "2026-05-02T10:00:00.000Z" and first["seq"] > 0


def test_commands(console: tuple[LiveConsole, LocalDesk], api: httpx.Client) -> None:
    _, desk = console
    alert = desk.raise_alert("cho-1", "person", "cam-1")
    event_id = alert.first_event_id
    snap = api.post(f"/hubs/cho-1/commands/snapshot?alert_id={alert.id}", json={"id": event_id})
    assert snap.status_code == 200 and snap.json()["args"] == {"id": event_id}
    assert api.post("/hubs/cho-1/commands/ping", json={}).status_code == 200
    assert [(c.name, c.alert_id) for c in desk.commands_sent] == [
        ("snapshot", alert.id),
        ("ping", None),
    ]

    assert api.post("/hubs/nobody/commands/ping").status_code == 404
    assert api.post("/hubs/cho-1/commands/reboot").status_code in (404, 405)
    assert api.post("/hubs/cho-1/commands/snapshot", json={}).status_code == 422
    assert api.post("/hubs/cho-1/commands/snapshot", json={"id": "../x"}).status_code == 422
    assert api.post("/hubs/cho-1/commands/silence", json={"by": "x"}).status_code == 422
    assert api.post("/hubs/Cho-1/commands/silence").status_code == 422
    mismatch = api.post(f"/hubs/truong-2/commands/silence?alert_id={alert.id}")
    assert mismatch.status_code == 409
    assert api.post("/hubs/cho-1/commands/silence?alert_id=4242").status_code == 404
    desk.refuse_commands = True
    failed = api.post("/hubs/cho-1/commands/silence")
    assert failed.status_code == 502 and "no connection" in failed.json()["detail"]
    assert len(desk.commands_sent) == 2


def test_a_large_body_is_refused_before_it_is_read(
    console: tuple[LiveConsole, LocalDesk], api: httpx.Client
) -> None:
    _, desk = console
    alert = desk.raise_alert()
    response = api.post(
        f"/alerts/{alert.id}/close",
        content=b'{"outcome": "real", "note": "' + b"x" * 100_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413 and "larger" in response.json()["detail"]


def test_errors_under_api_are_json(api: httpx.Client) -> None:
    response = api.get("/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_the_openapi_document(console: tuple[LiveConsole, LocalDesk]) -> None:
    live, _ = console
    doc = httpx.get(f"{live.url}/api/v1/openapi.json", timeout=30).json()
    paths = doc["paths"]
    assert set(paths) == {
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/alerts/{alert_id}/close",
        "/api/v1/hubs",
        "/api/v1/events",
        "/api/v1/hubs/{hub}/commands/silence",
        "/api/v1/hubs/{hub}/commands/ping",
        "/api/v1/hubs/{hub}/commands/snapshot",
    }
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    limit = next(p for p in paths["/api/v1/events"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000
    assert httpx.get(f"{live.url}/docs", timeout=30).status_code in (303, 404)

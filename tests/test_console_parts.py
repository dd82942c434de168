"""The console's small parts on their own: a hub's health read defensively, the map's
projection, times brought to the store's form, the accounts' rules."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from console_kit import PASSWORD

from commune.db import Db
from commune.hubs import ExpectedHub, HubBook, HubRow
from console.accounts import AccountError, Accounts, role_allows
from console.hub_map import HEIGHT, MARGIN, WIDTH, place
from console.hub_view import HubView, battery_mv, hub_view
from console.params import EARLIEST, LATEST, BadParameter, parse_time, rfc3339, store_time
from console.queries import HubChoice, hub_choices, hub_names


def row(hub: str = "h", **fields: Any) -> HubRow:
    values: dict[str, Any] = dict.fromkeys(HubRow.__dataclass_fields__)
    values.update(hub=hub, expected=True, **fields)
    return HubRow(**values)


@pytest.mark.parametrize(
    "health",
    [
        {"buses": "x"},
        {"buses": {"b": None}},
        {"buses": {"b": {"nodes": [1, 2]}}},
        {"buses": {"b": {"nodes": {"n": {"battery_mv": True}}}}},
        {"buses": {"b": {"nodes": {"n": {"battery_mv": 10**30}}}}},
        {"buses": {"b": {"nodes": {"n": {"battery_mv": float("nan")}}}}},
        {"buses": {"b": {"nodes": {"n": {"battery_mv": -5}}}}},
        {},
    ],
)
def test_battery_ignores_what_is_not_a_reading(health: dict[str, Any]) -> None:
    assert battery_mv(health) is None


def test_a_hostile_health_gives_a_plain_view() -> None:
    deep: Any = {}
    for _ in range(200):
        deep = {"x": deep}
    health = {
        "outbox": {"pending": "many", "undelivered_alarm": -1},
        "inputs": [1],
        "cameras": {"c": "up", "d": {"state": 5}},
        "buses": deep,
    }
    view = hub_view(row(health=health, status="online", status_at="2026-01-01T00:00:00.000Z"))
    assert (view.pending, view.undelivered_alarms, view.battery_mv) == (None, None, None)
    assert view.inputs == {} and view.cameras == {"c": "?", "d": "?"}
    assert view.status == "online"


def test_status_from_what_was_heard() -> None:
    assert hub_view(row()).status == "never"
    assert hub_view(row(last_event_at="2026-01-01T00:00:00.000Z")).status == "unknown"
    assert hub_view(row(status="offline", status_at="2026-01-01T00:00:00.000Z")).status == "offline"


def view(hub: str, lat: float | None, lon: float | None) -> HubView:
    return hub_view(row(hub, latitude=lat, longitude=lon))


def test_the_map_keeps_north_up_east_right_and_fits_the_picture() -> None:
    dots, elsewhere = place(
        [
            view("w", 10.0, 106.0),
            view("e", 10.0, 106.02),
            view("n", 10.03, 106.01),
            view("x", None, None),
        ]
    )
    at = {d.hub.hub: (d.x, d.y) for d in dots}
    assert [v.hub for v in elsewhere] == ["x"]
    assert at["w"][0] < at["n"][0] < at["e"][0]
    assert at["n"][1] < at["w"][1] == at["e"][1]
    for x, y in at.values():
        assert MARGIN - 0.1 <= x <= WIDTH - MARGIN + 0.1
        assert MARGIN - 0.1 <= y <= HEIGHT - MARGIN + 0.1
    wide, _ = place([view("w", 10.0, 106.0), view("e", 10.0, 106.02)])
    assert [d.hub.hub for d in wide if d.label_left] == ["e"]  # its name stays in the picture
    # Equirectangular: 0.02 degrees of longitude at 10 degrees north is shorter than 0.02 of
    # latitude, by the cosine.
    width = at["e"][0] - at["w"][0]
    height = at["w"][1] - at["n"][1]
    assert width / height == pytest.approx((0.02 * math.cos(math.radians(10.015))) / 0.03, 0.01)


def test_one_hub_or_one_place_sits_in_the_middle() -> None:
    (dot,), _ = place([view("a", 10.0, 106.0)])
    assert (dot.x, dot.y) == (WIDTH / 2, HEIGHT / 2)
    dots, _ = place([view("a", 10.0, 106.0), view("b", 10.0, 106.0)])
    assert {(d.x, d.y) for d in dots} == {(WIDTH / 2, HEIGHT / 2)}
    assert place([]) == ([], [])


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2026-03-01T08:00:00Z", "2026-03-01T08:00:00.000Z"),
        ("2026-03-01T15:00:00+07:00", "2026-03-01T08:00:00.000Z"),
        ("2026-03-01t08:00:00.123456789z", "2026-03-01T08:00:00.123Z"),
        ("0001-01-01T00:00:00+01:00", EARLIEST),
        ("9999-12-31T23:59:59-01:00", LATEST),
    ],
)
def test_rfc3339_times_in_the_stores_form(text: str, stored: str) -> None:
    assert rfc3339(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01",
        "2026-03-01T08:00:00",
        "0.5",
        "2026-02-30T00:00:00Z",
        "2026-03-01 08:00:00Z",
        "2026-03-01T08:00:00+24:00",
        "2026-03-01T25:00:00Z",
        "",
    ],
)
def test_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError):
        rfc3339(text)


def test_form_dates() -> None:
    assert parse_time("since", "2026-03-01") == "2026-03-01T00:00:00.000Z"
    assert parse_time("until", "2026-03-01", end_of_day=True) == "2026-03-02T00:00:00.000Z"
    assert parse_time("since", "2026-03-01T10:00") == "2026-03-01T10:00:00.000Z"
    with pytest.raises(BadParameter, match="until"):
        parse_time("until", "9999-12-31", end_of_day=True)
    assert store_time(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"  # naive: UTC


def test_account_rules(tmp_path: Path) -> None:
    with Db(tmp_path / "a.sqlite3") as db:
        accounts = Accounts(db)
        for bad in ("", "a b", "-x", "x" * 65, "../x", "ä"):
            with pytest.raises(AccountError):
                accounts.add_user(bad, "viewer", PASSWORD)
        with pytest.raises(AccountError, match="empty"):
            accounts.add_user("a", "viewer", "")
        with pytest.raises(AccountError, match="role"):
            accounts.add_user("a", "chief", PASSWORD)
        accounts.add_user("a", "viewer", PASSWORD)
        token, session = accounts.open_session("a", 1)
        assert accounts.session(token) == session
        accounts.set_role("a", "admin")
        refreshed = accounts.session(token)
        assert refreshed is not None and refreshed.role == "admin"  # the role as it is now
        accounts.set_password("a", "new password")
        assert accounts.session(token) is None  # a new password ends the sessions
        assert accounts.session("") is None and accounts.session("x" * 500) is None
        assert accounts.token("tqc_" + "x" * 43) is None and accounts.token("nope") is None
    assert role_allows("admin", "operator") and role_allows("operator", "viewer")
    assert not role_allows("viewer", "operator") and not role_allows("root", "viewer")


def test_a_province_of_hubs_on_the_map_keeps_its_corners() -> None:
    grid = [(n, 10.65 + n % 50 * 0.005, 106.55 + n // 50 * 0.004) for n in range(4000)]
    dots, _ = place([view(f"h{n:04d}", lat, lon) for n, lat, lon in grid])
    at = {d.hub.hub: (d.x, d.y) for d in dots}
    assert len(at) == 4000
    south_west, north_east = at["h0000"], at["h3999"]
    assert south_west[0] == min(x for x, _ in at.values())  # westmost
    assert south_west[1] == max(y for _, y in at.values())  # southmost: lowest in the picture
    assert north_east[0] == max(x for x, _ in at.values())
    assert north_east[1] == min(y for _, y in at.values())


def test_hub_names_and_choices_read_only_what_the_pages_show(tmp_path: Path) -> None:
    with Db(tmp_path / "h.sqlite3") as db:
        hubs = HubBook(db)
        hubs.set_expected(
            [ExpectedHub(f"h{n:04d}", name=f"Tổ {n}" if n % 3 else "") for n in range(1200)]
        )
        hubs.record_event("heard-1", "panic", "2026-03-01T08:00:00.000Z")
        numbers = [*range(0, 1200, 2), 1]
        wanted = [f"h{n:04d}" for n in numbers] + ["heard-1", "nobody"]
        names = hub_names(db, wanted)  # more ids than one query takes
        assert names == {f"h{n:04d}": f"Tổ {n}" for n in numbers if n % 3}
        assert hub_names(db, []) == {}
        choices = hub_choices(db)
        assert [c.hub for c in choices] == sorted([f"h{n:04d}" for n in range(1200)] + ["heard-1"])
        assert choices[1] == HubChoice("h0001", "Tổ 1") and choices[0].name in ("", None)

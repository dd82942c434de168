"""The history page's search (hub, kind, zone, dates, outcome, state, pages) and its CSV
export, which must not hand a spreadsheet a formula."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_kit import (
    STORES,
    Browser,
    LiveConsole,
    LocalDesk,
    live_console,
    make_users,
    store_param,
)

from console.csv_export import COLUMNS, safe_cell


@pytest.fixture(params=STORES)
def console(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveConsole, LocalDesk]]:
    with live_console(tmp_path, store_param(request)) as (live, desk):
        make_users(live.accounts)
        yield live, desk


@pytest.fixture
def viewer(console: tuple[LiveConsole, LocalDesk]) -> Iterator[Browser]:
    client = console[0].client()
    assert client.login("viewer1").status_code == 303
    yield client
    client.close()


def found(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="history-row" data-alert-id="(\d+)"', html)]


@pytest.fixture
def history(console: tuple[LiveConsole, LocalDesk]) -> dict[str, int]:
    """Five alerts over three days, some closed."""
    _, desk = console
    ids = {}
    for name, hub, kind, zone, day in (
        ("panic_1", "cho-1", "panic", "panic-1", "2026-03-01T08:00:00.000Z"),
        ("fire_1", "cho-1", "fire", "smoke-1", "2026-03-02T09:00:00.000Z"),
        ("tamper_2", "truong-2", "tamper", "tamper-1", "2026-03-02T10:00:00.000Z"),
        ("panic_2", "truong-2", "panic", "panic-1", "2026-03-03T11:00:00.000Z"),
        ("panic_3", "cho-1", "panic", "panic-2", "2026-03-03T23:30:00.000Z"),
    ):
        ids[name] = desk.raise_alert(hub, kind, zone, received_at=day).id
    desk.close(ids["panic_1"], "op1", "false_alarm", "bấm nhầm")
    desk.close(ids["fire_1"], "op1", "real")
    desk.close(ids["panic_2"], "op1", "test")
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["panic_3", "panic_2", "tamper_2", "fire_1", "panic_1"]),
        ("hub=cho-1", ["panic_3", "fire_1", "panic_1"]),
        ("kind=panic", ["panic_3", "panic_2", "panic_1"]),
        ("zone=panic-1", ["panic_2", "panic_1"]),
        ("outcome=false_alarm", ["panic_1"]),
        ("state=new", ["panic_3", "tamper_2"]),
        ("since=2026-03-02&until=2026-03-02", ["tamper_2", "fire_1"]),  # the whole day
        ("since=2026-03-03", ["panic_3", "panic_2"]),
        ("until=2026-03-01", ["panic_1"]),
        ("since=2026-03-03T23:00:00%2B07:00", ["panic_3"]),  # 16:00 UTC, after panic_2
        ("since=2026-03-03T12:00:00Z&hub=cho-1&kind=panic", ["panic_3"]),
        ("hub=cho-1&outcome=real", ["fire_1"]),
    ],
)
def test_history_filters(
    viewer: Browser, history: dict[str, int], query: str, expected: list[str]
) -> None:
    response = viewer.get(f"/history?{query}")
    assert response.status_code == 200
    assert found(response.text) == [history[name] for name in expected]


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-13-01",
        "hub=Cho-1",
        "kind=DROP%20TABLE",
        "outcome=maybe",
        "state=open",
        "zone=" + "z" * 65,
        "page=0",
        "page=abc",
        "since=" + "9" * 50,
    ],
)
def test_history_refuses_what_it_cannot_search(
    viewer: Browser, history: dict[str, int], query: str
) -> None:
    response = viewer.get(f"/history?{query}", headers={"accept-language": "en"})
    assert response.status_code == 400
    assert 'id="message"' in response.text or 'id="error-status"' in response.text
    if not query.startswith("page="):  # the export has no pages
        assert viewer.get(f"/history.csv?{query}").status_code == 400


def test_history_pages(console: tuple[LiveConsole, LocalDesk], viewer: Browser) -> None:
    _, desk = console
    ids = [
        desk.raise_alert(
            f"hub-{i:03d}", "panic", received_at=f"2026-04-01T00:{i // 60:02d}:{i % 60:02d}.000Z"
        ).id
        for i in range(60)
    ]
    first = viewer.get("/history").text
    assert found(first) == list(reversed(ids))[:50]
    assert 'id="page-next"' in first and 'id="page-prev"' not in first
    second = viewer.get("/history?page=2").text
    assert found(second) == list(reversed(ids))[50:]
    assert 'id="page-next"' not in second and 'id="page-prev"' in second


def test_the_csv_export_is_the_same_search(viewer: Browser, history: dict[str, int]) -> None:
    response = viewer.get("/history.csv?hub=cho-1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text)))
    assert tuple(table[0]) == COLUMNS
    ids = [int(row[0]) for row in table[1:]]
    assert ids == [history["panic_3"], history["fire_1"], history["panic_1"]]
    by_id = {int(row[0]): dict(zip(COLUMNS, row, strict=True)) for row in table[1:]}
    first = by_id[history["panic_1"]]
    assert (first["outcome"], first["note"], first["closed_by"]) == (
        "false_alarm",
        "bấm nhầm",
        "op1",
    )


def test_the_csv_export_defuses_formulas(
    console: tuple[LiveConsole, LocalDesk], viewer: Browser
) -> None:
    _, desk = console
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB"]
    for i, zone in enumerate(hostile):
        alert = desk.raise_alert(f"hub-{i}", "panic", zone)
        desk.close(alert.id, "op1", "other", note="=cmd|' /C calc'!A0")
    table = list(csv.reader(io.StringIO(viewer.get("/history.csv").text)))
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in table[1:]]
    assert sorted(r["zone"] for r in rows) == sorted("'" + z for z in hostile)
    assert all(r["note"] == "'=cmd|' /C calc'!A0" for r in rows)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_safe_cell_leaves_plain_values_alone() -> None:
    assert safe_cell("2026-03-01T08:00:00.000Z") == "2026-03-01T08:00:00.000Z"
    assert safe_cell(None) == ""
    assert safe_cell(120) == "120"
    assert safe_cell("Chợ An Đông") == "Chợ An Đông"
    assert safe_cell("=1") == "'=1"

"""The board ``tuquan watch`` shows: the open alerts in queue order, then the hubs.

The same cells make a rich table for a terminal (new alarms stand out in colour) and plain,
aligned text for a pipe (``--once > file``). Every text from the store (hub names, zones,
kinds) is shown through ``printable``: a control character or an escape sequence a hub or a
config put there is never sent to the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from commune.alerts import NEW, Alert
from commune.hubs import HubRow
from console.terminal_store import Board
from core.events import Priority

CELL_CHARS = 40  # the longest text of one cell
PRIORITY_NAMES: dict[int, str] = {
    Priority.ALARM: "ALARM",
    Priority.TROUBLE: "trouble",
    Priority.DETECTION: "detection",
}
ALERT_COLUMNS = ("id", "class", "age", "hub", "kind", "zone", "state", "events", "ack by")
HUB_COLUMNS = ("hub", "name", "state", "last seen", "backlog", "health")
HEALTHY_STATES = ("online", "heard")


def printable(value: object, limit: int = CELL_CHARS) -> str:
    """``value`` as one line of printable text, at most ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def age(iso: str | None, now: datetime) -> str:
    """How long ago, shortly: 45s, 12m, 3h, 2d ("-" for never, "?" for an unreadable time)."""
    if not iso:
        return "-"
    at = parse_time(iso)
    if at is None:
        return "?"
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def seconds_since(iso: str | None, now: datetime) -> float | None:
    at = parse_time(iso)
    return None if at is None else (now - at).total_seconds()


# -- the cells --------------------------------------------------------------------------------


def alert_cells(alert: Alert, names: Mapping[str, str], now: datetime) -> list[str]:
    hub = names.get(alert.hub)
    return [
        str(alert.id),
        PRIORITY_NAMES.get(alert.priority, str(alert.priority)),
        age(alert.opened_at, now),
        printable(f"{hub} ({alert.hub})" if hub else alert.hub),
        printable(alert.kind),
        printable(alert.zone),
        alert.state,
        str(alert.events),
        printable(alert.ack_by or "-"),
    ]


def hub_state(row: HubRow, now: datetime, window_s: float) -> str:
    """online, offline, silent (nothing heard for longer than its window), never seen, or
    heard: events only, no status or health ever recorded (a receiver without the web
    console, which alone hears those), so its silence cannot be judged."""
    if row.status == "offline":
        return "offline"
    seen = row.last_seen_at
    if seen is None:
        return "never seen"
    if row.status is None and row.health_at is None:
        return "heard"
    quiet = seconds_since(seen, now)
    if quiet is not None and quiet > (row.supervision_s or window_s):
        return "silent"
    return "online" if row.status == "online" else "heard"


def backlog(health: Mapping[str, Any] | None) -> str:
    """The hub's undelivered events by priority, from its health's ``outbox.undelivered_*``."""
    outbox = health.get("outbox") if health else None
    if not isinstance(outbox, Mapping):
        return "-"
    parts = []
    for key, value in sorted(outbox.items()):
        if (
            isinstance(key, str)
            and key.startswith("undelivered_")
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value > 0
        ):
            parts.append(
                f"{printable(key.removeprefix('undelivered_'), 12)} {printable(value, 12)}"
            )
    return ", ".join(parts) if parts else "0"


def health_label(row: HubRow) -> str:
    if row.health is None:
        return "-"
    if row.health_verified is None:
        return "unsigned"
    return "verified" if row.health_verified else "NOT VERIFIED"


def hub_cells(row: HubRow, now: datetime, window_s: float) -> list[str]:
    return [
        printable(row.hub),
        printable(row.name or row.place or "-"),
        hub_state(row, now, window_s),
        age(row.last_seen_at, now),
        backlog(row.health),
        health_label(row),
    ]


def needs_attention(cells: Sequence[str]) -> bool:
    return (
        cells[2] not in HEALTHY_STATES or cells[4] not in ("-", "0") or cells[5] == "NOT VERIFIED"
    )


# -- plain text -------------------------------------------------------------------------------


def plain_board(board: Board, now: datetime, window_s: float) -> str:
    """The board as aligned plain text: a title line, then a table, for alerts and hubs."""
    alerts = [alert_cells(a, board.names, now) for a in board.alerts]
    more = board.open_count - len(board.alerts)
    lines = [f"ALERTS: {board.open_count} open", *_aligned(ALERT_COLUMNS, alerts)]
    if more > 0:
        lines.append(f"... and {more} more")
    hubs = [hub_cells(h, now, window_s) for h in board.hubs]
    lines += ["", f"HUBS: {len(hubs)}", *_aligned(HUB_COLUMNS, hubs)]
    return "\n".join(lines) + "\n"


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    widths = [max(cell_len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return ["  ".join(c + " " * (w - cell_len(c)) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (header, *rows)]  # fmt: skip


# -- rich -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Room:
    """How many rows of each table fit on the screen."""

    alerts: int
    hubs: int

    @classmethod
    def for_height(cls, height: int, hubs: int) -> Room:
        # Around the rows: the header line, two titles, two table headings and borders (8),
        # the message and the prompt.
        free = max(4, height - 13)
        hub_rows = min(hubs, max(1, free // 3))
        return cls(alerts=max(1, free - hub_rows), hubs=hub_rows)


# Columns that shrink (with an ellipsis) when the terminal is narrow, and their shares of it;
# the others always show whole.
FLEXIBLE = {"hub": 3, "kind": 2, "zone": 2, "ack by": 2, "name": 3}


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        expand=True,
    )
    for name in columns:
        share = FLEXIBLE.get(name)
        table.add_column(
            name,
            no_wrap=True,
            ratio=share,
            overflow="ellipsis" if share else "fold",
            justify="right" if name == "events" else "left",
        )
    return table


def rich_board(
    board: Board, now: datetime, window_s: float, room: Room | None = None
) -> RenderableType:
    """The board as two rich tables; alerts nobody acknowledged stand out by class (an alarm
    white on red), hubs that need a look in yellow and first."""
    alerts = _table(f"Open alerts: {board.open_count}", ALERT_COLUMNS)
    shown = board.alerts if room is None else board.alerts[: room.alerts]
    for alert in shown:
        alerts.add_row(*alert_cells(alert, board.names, now), style=_alert_style(alert))
    more = board.open_count - len(shown)
    if more > 0:
        alerts.add_row(Text(f"… {more} more", style="italic"))
    if not shown:
        alerts.add_row(Text("none", style="green"))

    rows = [hub_cells(h, now, window_s) for h in board.hubs]
    rows.sort(key=lambda cells: not needs_attention(cells))  # stable: by id within each
    hubs = _table(f"Hubs: {len(rows)}", HUB_COLUMNS)
    for cells in rows if room is None else rows[: room.hubs]:
        hubs.add_row(*cells, style="yellow" if needs_attention(cells) else None)
    if room is not None and len(rows) > room.hubs:
        hubs.add_row(Text(f"… {len(rows) - room.hubs} more", style="italic"))
    return Group(alerts, Text(""), hubs)


def _alert_style(alert: Alert) -> str | None:
    if alert.state != NEW:
        return "dim" if alert.priority > Priority.ALARM else None
    if alert.priority == Priority.ALARM:
        return "bold white on red"
    return "bold yellow" if alert.priority == Priority.TROUBLE else "bold cyan"

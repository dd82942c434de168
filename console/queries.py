"""Reads of the store the console needs and ``commune`` does not offer: the queue with filters,
the count of alarms nobody acknowledged, a hub's recent events, the events history.

Events are read newest stored first (rowid; a hub's recent events newest received first), and
the history's ``since``/``until`` bound ``received_at``, the receiver's clock (a hub's own
``ts`` may be unsynchronised)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from commune.alerts import ACKNOWLEDGED, CLOSED, NEW, Alert, event_dict
from commune.db import Db
from core.events import Priority


@dataclass(frozen=True)
class EventFilter:
    hub: str | None = None
    kind: str | None = None
    since: str | None = None  # received_at >= since (UTC ISO-8601)
    until: str | None = None  # received_at < until
    limit: int = 100


@dataclass(frozen=True)
class HubChoice:
    hub: str
    name: str | None


NAMES_CHUNK = 500  # hub ids per query, well under SQLite's limit on parameters


def _has_events(db: Db) -> bool:
    return db.has_table("events")


def queue(
    db: Db,
    *,
    hub: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[Alert]:
    """Open alerts in queue order (priority, new before acknowledged, newest first)."""
    clauses, params = ["state != ?"], [CLOSED]
    for column, value in (("hub", hub), ("kind", kind), ("state", state)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    rows = db.read(
        f"SELECT * FROM alerts WHERE {' AND '.join(clauses)} ORDER BY priority, "
        f"CASE state WHEN '{NEW}' THEN 0 ELSE 1 END, opened_at DESC, id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [Alert(**dict(r)) for r in rows]


def alarm_count(db: Db) -> int:
    """Alarms (priority 0) still ``new``: while there is one, the browsers sound."""
    row = db.read_one(
        "SELECT count(*) FROM alerts WHERE state = ? AND priority = ?", (NEW, int(Priority.ALARM))
    )
    return int(row[0]) if row is not None else 0


def open_by_hub(db: Db) -> dict[str, int]:
    """Each hub's most urgent open alert priority."""
    rows = db.read(
        "SELECT hub, min(priority) FROM alerts WHERE state IN (?, ?) GROUP BY hub",
        (NEW, ACKNOWLEDGED),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def hub_names(db: Db, hubs: Iterable[str]) -> dict[str, str]:
    """The configured names of these hubs (a hub without one is left out). Only the names:
    the whole hubs table, health and all, is thousands of rows in a province."""
    wanted = sorted(set(hubs))
    names: dict[str, str] = {}
    for start in range(0, len(wanted), NAMES_CHUNK):
        chunk = wanted[start : start + NAMES_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for row in db.read(
            f"SELECT hub, name FROM hubs WHERE hub IN ({marks}) AND name IS NOT NULL "
            "AND name != ''",
            chunk,
        ):
            names[str(row[0])] = str(row[1])
    return names


def hub_choices(db: Db) -> list[HubChoice]:
    """Every known hub's id and name, by id (the history's hub filter)."""
    return [HubChoice(str(r[0]), r[1]) for r in db.read("SELECT hub, name FROM hubs ORDER BY hub")]


def hub_events(db: Db, hub: str, limit: int = 20) -> list[dict[str, Any]]:
    """The hub's newest stored events."""
    if not _has_events(db):
        return []
    # By the receiver's time, then as stored: what idx_events_hub_received gives without
    # sorting the hub's whole history (rowid alone sorted a year of it: 1.5 ms -> 0.08 ms).
    rows = db.read(
        "SELECT * FROM events WHERE hub = ? ORDER BY received_at DESC, rowid DESC LIMIT ?",
        (hub, limit),
    )
    return [event_dict(r) for r in rows]


def events(db: Db, f: EventFilter) -> list[dict[str, Any]]:
    """Stored events matching ``f``, newest stored first."""
    if not _has_events(db):
        return []
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("hub", f.hub), ("kind", f.kind)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if f.since is not None:
        clauses.append("received_at >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("received_at < ?")
        params.append(f.until)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.read(f"SELECT * FROM events {where} ORDER BY rowid DESC LIMIT ?", (*params, f.limit))
    return [event_dict(r) for r in rows]

"""One hub as the board shows it, read from what ``HubBook`` keeps (its last ``health`` is the
hub's own JSON: every field is checked for its type before it is used, and anything else is
left out rather than trusted).

- status: ``online``/``offline`` as the hub's retained status says, ``unknown`` when heard but
  without a status, ``never`` if never heard;
- backlog: the outbox's pending events and undelivered alarms;
- battery: the lowest ``battery_mv`` of the sensor nodes on its buses (``buses.*.nodes.*``);
- cameras: each camera's state in a word (from health ``cameras``: open, offline, tamper...);
- sensors: its inputs (name → state) and its bus nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commune.hubs import HubRow

MAX_ITEMS = 64  # of inputs, nodes or cameras shown per hub
MAX_TEXT = 64


@dataclass(frozen=True)
class HubView:
    hub: str
    name: str
    place: str
    contact: str
    expected: bool
    status: str  # online | offline | unknown (heard, no status) | never
    last_seen_at: str | None
    latitude: float | None
    longitude: float | None
    pending: int | None = None
    undelivered_alarms: int | None = None
    backlog_since: str | None = None
    unsynced_since: str | None = None
    battery_mv: int | None = None
    cameras: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    health_verified: bool | None = None
    open_priority: int | None = None  # its most urgent open alert


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def battery_mv(health: dict[str, Any]) -> int | None:
    """The lowest ``battery_mv`` over ``buses.*.nodes.*``, or None when no node reports one."""
    readings: list[int] = []
    for bus in list(_mapping(health.get("buses")).values())[:MAX_ITEMS]:
        for node in list(_mapping(_mapping(bus).get("nodes")).values())[:MAX_ITEMS]:
            mv = _count(_mapping(node).get("battery_mv"))
            if mv is not None and mv < 100_000:
                readings.append(mv)
    return min(readings) if readings else None


def cameras(health: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, camera in list(_mapping(health.get("cameras")).items())[:MAX_ITEMS]:
        out[_text(name)] = camera_state(_mapping(camera))
    return out


def camera_state(camera: dict[str, Any]) -> str:
    """A camera of the hub's health in a word: ``starting`` (the model loads), ``off`` (the
    cameras are off: the model was refused), ``offline`` (no frames), ``tamper: <reason>``,
    ``open`` (watching), else ``?``."""
    if camera.get("running") is False:
        return "starting" if camera.get("starting") is True else "off"
    if camera.get("offline") is True:
        return "offline"
    tamper = camera.get("tamper")
    if isinstance(tamper, str) and tamper:
        return f"tamper: {_text(tamper)}"
    if camera.get("open") is True:
        return "open"
    state = camera.get("state")
    return _text(state) if isinstance(state, str) and state else "?"


def inputs(health: dict[str, Any]) -> dict[str, str]:
    """Each input's state: ``active``, ``idle`` or ``fault``."""
    out: dict[str, str] = {}
    for name, value in list(_mapping(health.get("inputs")).items())[:MAX_ITEMS]:
        if value is True:
            out[_text(name)] = "active"
        elif value is False:
            out[_text(name)] = "idle"
        else:
            out[_text(name)] = "fault" if value == "fault" else "?"
    return out


def nodes(health: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for bus in list(_mapping(health.get("buses")).values())[:MAX_ITEMS]:
        names.extend(_text(n) for n in list(_mapping(_mapping(bus).get("nodes")))[:MAX_ITEMS])
    return names[:MAX_ITEMS]


def hub_view(row: HubRow, open_priority: int | None = None) -> HubView:
    health = row.health if isinstance(row.health, dict) else {}
    outbox = _mapping(health.get("outbox"))
    if row.status in ("online", "offline"):
        status = row.status
    else:
        status = "unknown" if row.last_seen_at else "never"
    return HubView(
        hub=row.hub,
        name=row.name or "",
        place=row.place or "",
        contact=row.contact or "",
        expected=row.expected,
        status=status,
        last_seen_at=row.last_seen_at,
        latitude=row.latitude,
        longitude=row.longitude,
        pending=_count(outbox.get("pending")),
        undelivered_alarms=_count(outbox.get("undelivered_alarm")),
        backlog_since=row.backlog_since,
        unsynced_since=row.unsynced_since,
        battery_mv=battery_mv(health),
        cameras=cameras(health),
        inputs=inputs(health),
        nodes=nodes(health),
        health_verified=row.health_verified,
        open_priority=open_priority,
    )

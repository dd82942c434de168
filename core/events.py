"""The event model: what a hub reports, how it is prioritised and how it looks on the wire.

An ``Event`` is made by a sensor thread and becomes real only once the outbox commits it; the
outbox then gives it its per-hub sequence number (``seq``). The JSON form is built from the
stored row, so every re-send of an event is byte-for-byte the same message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from core.ids import new_event_id


class Priority(IntEnum):
    """Drain order: lower drains first. Alarms are never evicted from a full outbox."""

    ALARM = 0  # life safety: panic, duress, fire, smoke
    TROUBLE = 1  # tamper, supervision loss, low battery, uplink/adapter trouble
    DETECTION = 2  # camera detections
    TELEMETRY = 3  # heartbeats, periodic test reports, readings


@dataclass(frozen=True)
class Kind:
    """An event kind: its topic name, Contact ID code and priority."""

    name: str
    cid: int
    priority: Priority


# Contact ID codes from the Ademco table (see shared REFERENCES); the topic is event/<name>.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("panic", 120, Priority.ALARM),
        Kind("duress", 121, Priority.ALARM),
        Kind("silent_panic", 122, Priority.ALARM),
        Kind("fire", 110, Priority.ALARM),
        Kind("smoke", 111, Priority.ALARM),
        Kind("heat", 114, Priority.ALARM),
        Kind("gas", 151, Priority.ALARM),
        Kind("tamper", 137, Priority.TROUBLE),
        Kind("sensor_tamper", 144, Priority.TROUBLE),
        Kind("door", 131, Priority.TROUBLE),  # perimeter contact
        Kind("supervision", 147, Priority.TROUBLE),
        Kind("rf_supervision", 381, Priority.TROUBLE),
        Kind("low_battery", 384, Priority.TROUBLE),
        Kind("system_low_battery", 302, Priority.TROUBLE),
        Kind("bus_fault", 330, Priority.TROUBLE),  # system peripheral trouble: a bus adapter
        Kind("camera_offline", 380, Priority.TROUBLE),  # sensor trouble: a camera's video lost
        Kind("camera_tamper", 383, Priority.TROUBLE),  # sensor tamper: covered, defocused, turned
        Kind("silenced", 406, Priority.TROUBLE),  # Contact ID 406: cancel (siren silenced)
        Kind("storage_fault", 300, Priority.TROUBLE),  # system trouble: the outbox's disk
        Kind("uplink", 350, Priority.TROUBLE),  # communication trouble: the link was down
        Kind("input_fault", 380, Priority.TROUBLE),  # sensor trouble: a GPIO input failed
        # Raised by the commune's receiver about a hub, never by a hub (``RECEIVER_KINDS``).
        Kind("comm_trouble", 350, Priority.TROUBLE),  # the hub is offline or silent
        Kind("alarm_backlog", 354, Priority.TROUBLE),  # failure to communicate: alarms stuck
        Kind("clock_unsynced", 626, Priority.TROUBLE),  # time/date inaccurate
        Kind("person", 130, Priority.DETECTION),  # detection reported as a burglary-zone event
        Kind("test", 602, Priority.TELEMETRY),  # periodic test report
        Kind("telemetry", 602, Priority.TELEMETRY),
    )
}

RECEIVER_KINDS = frozenset({"comm_trouble", "alarm_backlog", "clock_unsynced"})
"""What the receiver's supervision of hubs reports (``source = "receiver"``); a hub that sends
one of these has its event refused at the receiver's edge."""

NEW = "E"  # Contact ID qualifier 1: new event / opening
RESTORE = "R"  # Contact ID qualifier 3: restore / closing


def utc_iso(ts: float) -> str:
    """``ts`` (Unix seconds) as UTC ISO-8601 with milliseconds and a Z suffix."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    """Now as UTC ISO-8601 with milliseconds and a Z suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One report from the hub. ``seq`` is 0 until the outbox commits the event."""

    kind: str
    zone: str
    source: str
    qualifier: str = NEW
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    ts: str = field(default_factory=utc_now_iso)
    clock_synced: bool = False
    seq: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if self.qualifier not in (NEW, RESTORE):
            raise ValueError(f"qualifier must be {NEW!r} or {RESTORE!r}, not {self.qualifier!r}")

    @property
    def priority(self) -> Priority:
        return KINDS[self.kind].priority

    @property
    def cid(self) -> int:
        return KINDS[self.kind].cid

    @property
    def is_restore(self) -> bool:
        return self.qualifier == RESTORE

    def to_dict(self, hub: str) -> dict[str, Any]:
        """The contract's JSON object (docs/topics.md)."""
        return {
            "id": self.id,
            "hub": hub,
            "seq": self.seq,
            "kind": self.kind,
            "priority": int(self.priority),
            "zone": self.zone,
            "source": self.source,
            "ts": self.ts,
            "clock_synced": self.clock_synced,
            "cid": self.cid,
            "qualifier": self.qualifier,
            "data": self.data,
        }

    def to_json(self, hub: str) -> bytes:
        return json.dumps(self.to_dict(hub), separators=(",", ":"), sort_keys=True).encode()


def event_from_dict(obj: dict[str, Any]) -> Event:
    """Parse a received event JSON object; raises ValueError/KeyError/TypeError on bad input."""
    return Event(
        kind=str(obj["kind"]),
        zone=str(obj["zone"]),
        source=str(obj.get("source", "")),
        qualifier=str(obj["qualifier"]),
        data=dict(obj.get("data") or {}),
        id=str(obj["id"]),
        ts=str(obj["ts"]),
        clock_synced=bool(obj.get("clock_synced", False)),
        seq=int(obj["seq"]),
    )

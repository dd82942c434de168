"""What the hub knows of one serial bus: its counters, and each node's state from its frames.

``NodeTracker`` turns a new frame (not a copy: ``sensors/serial_bus.py`` sorts those out) into
the events it reports, and keeps what the frames say of their node: battery, level, boot, the
conditions reported and not yet restored. That state is how a heartbeat repairs lost frames:
where its state bits disagree with what the hub has been told, the missing event is reported.
Frame positions are compared in ``(boot, seq)`` order, so a late copy of an older message is
reported but does not change the node's current state (docs/sensor-bus.md, "Frames to events").

A frame from a node id that is not configured stands for a node of its own (source
``node-<id>``, zone ``unknown``): a real smoke alarm from a mis-configured node must reach
someone.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.events import NEW, RESTORE, Event
from sensors.serial_port import PortStats

# These are the bus's log lines: they keep its logger name (logs are filtered on it).
log = logging.getLogger("sensors.serial_bus")

# The codec ships to MicroPython nodes and carries no type annotations; the hub reaches it as
# an untyped module object so that the hub's strict type check does not run over firmware code.
codec: Any = importlib.import_module("firmware_py.codec")

MAX_UNKNOWN_NODES = 64
UNKNOWN_LOG_INTERVAL_S = 60.0

# ALARM/RESTORE "what" -> event kind (CASE is the node's own tamper switch).
WHAT_KINDS: dict[int, str] = {
    codec.SMOKE: "smoke",
    codec.PANIC: "panic",
    codec.HEAT: "heat",
    codec.FIRE: "fire",
    codec.CASE: "sensor_tamper",
}

# HEARTBEAT state bit -> the event kind whose condition it shows.
STATE_KINDS: dict[int, str] = {
    codec.STATE_SMOKE: "smoke",
    codec.STATE_PANIC: "panic",
    codec.STATE_HEAT: "heat",
    codec.STATE_TAMPER: "sensor_tamper",
    codec.STATE_LOW_BATTERY: "low_battery",
}
# A panic is a moment, not a condition: a heartbeat with the panic bit clear does not restore it.
MOMENTARY_KINDS = frozenset({"panic"})


@dataclass
class BusStats(PortStats):
    """Counters of one bus since start (read by health; written by the reader thread), with
    its port's (opens, open failures, reopens, faults)."""

    frames: int = 0
    unknown_frames: int = 0
    duplicates: int = 0
    key_reused: int = 0
    unknown_what: int = 0
    ignored: int = 0
    handler_errors: int = 0
    acks: int = 0
    ack_errors: int = 0
    acks_dropped: int = 0


@dataclass
class NodeState:
    """What the hub knows of one node, from its frames."""

    id: int
    name: str
    zone: str
    known: bool
    heartbeat_s: float | None = None  # configured interval (None for an unknown node)
    last_seen: float | None = None
    battery_mv: int | None = None
    level: int | None = None
    state: int | None = None
    interval_s: int | None = None
    boot: int | None = None
    frames: int = 0
    active: set[str] = field(default_factory=set)  # conditions reported and not yet restored
    last_event: tuple[int, int] | None = None  # (boot, seq) of the newest event frame


def newer(pos: tuple[int, int], than: tuple[int, int] | None) -> bool:
    """Whether frame (boot, seq) comes after ``than``: a new boot, or a later sequence number."""
    if than is None or pos[0] != than[0]:
        return True
    return 0 < (pos[1] - than[1]) % 65536 < 32768


class NodeTracker:
    """The nodes of bus ``bus``: the configured ones (``known``) and those heard unconfigured.

    Used from the bus's reader thread only; health reads it as it stands.
    """

    def __init__(
        self,
        bus: str,
        known: Iterable[NodeState],
        stats: BusStats,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.bus = bus
        self.known: dict[int, NodeState] = {n.id: n for n in known}
        self.stats = stats
        self.clock = clock
        self._unknown: dict[int, NodeState] = {}
        self._unknown_logged: dict[int, float] = {}

    def unknown_ids(self) -> list[int]:
        return sorted(list(self._unknown))

    def health(self, lost: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Each configured node as its frames show it; ``lost`` is the supervisor's states."""
        now = self.clock()
        return {
            node.name: {
                "id": node.id,
                "last_seen_s": (
                    round(now - node.last_seen, 1) if node.last_seen is not None else None
                ),
                "battery_mv": node.battery_mv,
                "level": node.level,
                "state": node.state,
                "interval_s": node.interval_s,
                "active": sorted(list(node.active)),
                "boot": node.boot,
                "lost": bool(lost.get(node.name, {}).get("lost", False)),
            }
            for node in self.known.values()
        }

    def node(self, node_id: int) -> NodeState:
        """The node a frame comes from; an unconfigured id is counted and logged (at most once
        a minute), and kept for health up to ``MAX_UNKNOWN_NODES`` ids."""
        node = self.known.get(node_id)
        if node is not None:
            return node
        self.stats.unknown_frames += 1
        now = self.clock()
        last = self._unknown_logged.get(node_id)
        if last is None or now - last >= UNKNOWN_LOG_INTERVAL_S:
            self._unknown_logged[node_id] = now
            log.warning(
                "bus %s: frame from node id %d, which is not configured; reporting it "
                "as node-%d in zone 'unknown' (add a [[nodes]] entry)",
                self.bus,
                node_id,
                node_id,
            )
        node = self._unknown.get(node_id)
        if node is None:
            node = NodeState(id=node_id, name=f"node-{node_id}", zone="unknown", known=False)
            if len(self._unknown) < MAX_UNKNOWN_NODES:
                self._unknown[node_id] = node
        return node

    def events(self, frame: Any, node: NodeState) -> list[Event] | None:
        """The events a new frame reports (updating what is known of the node); None if the
        frame cannot be understood."""
        mtype, payload = frame.mtype, frame.payload
        pos = (frame.boot, frame.seq)
        node.boot = frame.boot
        base: dict[str, Any] = {
            "node": frame.node,
            "bus": self.bus,
            "boot": frame.boot,
            "seq": frame.seq,
        }
        if not node.known:
            base["unknown_node"] = True
        if mtype == codec.HEARTBEAT:
            millivolts, state, level, interval_s = codec.parse_heartbeat(payload)
            node.battery_mv, node.state, node.level = millivolts, state, level
            if interval_s != node.interval_s:
                node.interval_s = interval_s
                if node.heartbeat_s is not None and interval_s > node.heartbeat_s:
                    log.warning(
                        "bus %s: %s sends a heartbeat every %d s but heartbeat_s is %g: it "
                        "will be declared lost sooner than meant; make them agree",
                        self.bus,
                        node.name,
                        interval_s,
                        node.heartbeat_s,
                    )
            if not newer(pos, node.last_event):
                return []  # older than the last event frame: its bits may be stale
            return self._reconcile(node, state, {**base, "mv": millivolts, "level": level})
        if mtype in (codec.ALARM, codec.RESTORE):
            what, level = payload[0], codec.get_u16(payload, 1)
            kind = WHAT_KINDS.get(what)
            if kind is None:
                self.stats.unknown_what += 1
                log.error(
                    "bus %s: node %d sent %s of unknown type %d; not ACKed",
                    self.bus,
                    frame.node,
                    codec.TYPE_NAMES[mtype],
                    what,
                )
                return None
            node.level = level
            qualifier = NEW if mtype == codec.ALARM else RESTORE
            return [self._condition(node, pos, kind, qualifier, {**base, "level": level})]
        if mtype == codec.TAMPER:
            return [self._condition(node, pos, "sensor_tamper", NEW, base)]
        if mtype == codec.LOW_BATTERY:
            millivolts = codec.get_u16(payload, 0)
            node.battery_mv = millivolts
            return [self._condition(node, pos, "low_battery", NEW, {**base, "mv": millivolts})]
        self.stats.ignored += 1
        return []

    def _condition(
        self,
        node: NodeState,
        pos: tuple[int, int],
        kind: str,
        qualifier: str,
        data: dict[str, Any],
    ) -> Event:
        # An older message arriving late (a re-sent ALARM after the RESTORE that followed it) is
        # still reported, but the node's current state is what its newest message says.
        if newer(pos, node.last_event):
            node.last_event = pos
            if qualifier == NEW:
                node.active.add(kind)
            else:
                node.active.discard(kind)
        return Event(kind=kind, zone=node.zone, source=node.name, qualifier=qualifier, data=data)

    def _reconcile(self, node: NodeState, state: int, data: dict[str, Any]) -> list[Event]:
        """Events the hub missed, from a heartbeat's state bits."""
        events = []
        for bit, kind in STATE_KINDS.items():
            shown, known = bool(state & bit), kind in node.active
            if shown == known:
                continue
            if shown:
                node.active.add(kind)
                qualifier = NEW
            else:
                node.active.discard(kind)
                if kind in MOMENTARY_KINDS:
                    continue
                qualifier = RESTORE
            log.warning(
                "bus %s: heartbeat of %s shows %s %s that was never reported; reporting it",
                self.bus,
                node.name,
                kind,
                "active" if shown else "cleared",
            )
            events.append(
                Event(
                    kind=kind,
                    zone=node.zone,
                    source=node.name,
                    qualifier=qualifier,
                    data={**data, "from": "heartbeat"},
                )
            )
        return events

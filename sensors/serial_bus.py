"""The serial sensor bus: frames from sensor nodes in, ACKs out, one reader thread per port.

Each ``[[buses]]`` entry is a serial port (a USB adapter, a UART; RS-485 or plain TTL) on which
sensor nodes send frames in the codec of ``firmware_py/codec.py`` (docs/sensor-bus.md). A
``SerialBus`` owns the port and one reader thread. That thread reads whatever has arrived,
feeds it to a ``codec.Decoder``, turns each valid frame into events and hands them to ``emit``.

The rules that keep an alarm from being lost, late or forged:

* A frame is ACKed only once every event it produced is committed to the outbox: the ACK is
  written from the emit future's done callback (the hub's store thread), under the port lock.
  A future that fails is not ACKed, so the node sends the frame again.
* A copy of a frame already seen (same node, boot and sequence number, same content) is ACKed
  again but reported once; a copy of one still waiting for its commit is ACKed when that commits.
* Garbage, truncated and corrupted frames are counted by reason and dropped; nothing a node
  sends can end the reader thread.
* A frame from a node id that is not configured is still reported (source ``node-<id>``, zone
  ``unknown``) and ACKed: a real smoke alarm from a mis-configured node must reach someone.
* A heartbeat carries the node's state bits; where they disagree with what the hub has been
  told (an ALARM or RESTORE frame was lost), the missing event is reported.
* A port that fails (adapter unplugged, device path gone or replaced) is closed, reported once
  as ``bus_fault`` E, and reopened with backoff (0.2 s doubling to 5 s) without restarting
  anything; when it opens again ``bus_fault`` R follows. A port missing at start is the same.

Silence is the supervisor's business (``sensors/supervision.py``): every frame from a configured
node counts as a sign of life.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import termios
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial
import serial.rs485

from core.events import NEW, RESTORE, Event
from sensors.supervision import Supervisor

log = logging.getLogger(__name__)

# The codec ships to MicroPython nodes and carries no type annotations; the hub reaches it as
# an untyped module object so that the hub's strict type check does not run over firmware code.
codec: Any = importlib.import_module("firmware_py.codec")

READ_TIMEOUT_S = 0.1
WRITE_TIMEOUT_S = 0.2
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
PATH_CHECK_S = 0.5
RECENT_KEYS = 2048
DUPLICATE_WINDOW_S = 300.0
MAX_WAITING_ACKS = 8
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

# What a failing port raises: pyserial's errors, the OS's, and termios' own (not an OSError).
SERIAL_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)

Emit = Callable[[Event], Future[Any]]


class BusSpec(Protocol):
    """What a bus needs from its configuration (config.BusConfig fits)."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> str: ...

    @property
    def baud(self) -> int: ...

    @property
    def rs485(self) -> bool: ...


class NodeSpec(Protocol):
    """What a node needs from its configuration (config.NodeConfig fits)."""

    @property
    def name(self) -> str: ...

    @property
    def bus(self) -> str: ...

    @property
    def id(self) -> int: ...

    @property
    def zone(self) -> str: ...

    @property
    def heartbeat_s(self) -> float: ...

    @property
    def missed(self) -> int: ...

    @property
    def supervision_kind(self) -> str: ...


class SerialPort(Protocol):
    """The part of an open port the bus uses (pyserial's ``Serial`` fits)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def close(self) -> None: ...


def open_serial(spec: BusSpec) -> serial.Serial:
    """Open the bus port with pyserial: raw 8N1, short read timeout, exclusive (flock)."""
    return serial.Serial(
        spec.port,
        spec.baud,
        timeout=READ_TIMEOUT_S,
        write_timeout=WRITE_TIMEOUT_S,
        exclusive=True,
    )


def enable_rs485(port: Any) -> str:
    """Ask the kernel driver to switch the RS-485 transceiver (RTS high while sending).

    Returns ``"kernel"`` when the driver took it, else ``"adapter"``: most USB RS-485 adapters
    switch direction in hardware and need nothing; a UART with a bare transceiver does.
    """
    try:
        port.rs485_mode = serial.rs485.RS485Settings()
        return "kernel"
    except Exception as exc:  # ValueError from the ioctl, NotImplementedError off Linux...
        log.info("RS-485 mode not set by the driver (%s); relying on the adapter", exc)
        return "adapter"


@dataclass
class BusStats:
    """Counters of one bus since start (read by health; written by the reader thread)."""

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
    opens: int = 0
    open_failures: int = 0
    reopens: int = 0
    faults: int = 0


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


@dataclass
class _Recent:
    """A frame key seen lately: its content, and whether its events are committed."""

    content: tuple[Any, ...]
    first_seen: float
    committed: bool = False
    failed: bool = False
    remaining: int = 0  # events still waiting for their commit
    waiting: int = 0  # copies received meanwhile, each owed an ACK


def _newer(pos: tuple[int, int], than: tuple[int, int] | None) -> bool:
    """Whether frame (boot, seq) comes after ``than``: a new boot, or a later sequence number."""
    if than is None or pos[0] != than[0]:
        return True
    return 0 < (pos[1] - than[1]) % 65536 < 32768


class SerialBus:
    """One bus port, its reader thread and the nodes on it."""

    def __init__(
        self,
        spec: BusSpec,
        nodes: Iterable[NodeSpec],
        emit: Emit,
        *,
        supervisor: Supervisor | None = None,
        opener: Callable[[BusSpec], SerialPort] = open_serial,
        clock: Callable[[], float] = time.monotonic,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.supervisor = supervisor
        self.opener = opener
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.duplicate_window_s = duplicate_window_s
        self.stats = BusStats()
        self.nodes: dict[int, NodeState] = {
            n.id: NodeState(
                id=n.id, name=n.name, zone=n.zone, known=True, heartbeat_s=n.heartbeat_s
            )
            for n in nodes
            if n.bus == spec.name
        }
        self.rs485: str | None = None
        self._unknown: dict[int, NodeState] = {}
        self._unknown_logged: dict[int, float] = {}
        self._recent: OrderedDict[tuple[int, int, int], _Recent] = OrderedDict()
        self._lock = threading.Lock()  # the recent-keys map and its entries
        self._port_lock = threading.Lock()  # the port object: open, close, write
        self._port: SerialPort | None = None
        self._device: int | None = None  # st_rdev of the device the open port is
        self._bad_before: Counter[str] = Counter()  # decoder errors of earlier openings
        self._decoder: Any = codec.Decoder()
        self._faulted = False
        self._fault_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bus-{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._close_port()

    @property
    def is_open(self) -> bool:
        return self._port is not None

    # -- the reader thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_min_s
        opened_at = next_check = 0.0
        while not self._stop.is_set():
            if self._port is None:
                if not self._open():
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff_max_s)
                    continue
                opened_at = next_check = self.clock()
            port = self._port
            assert port is not None
            try:
                data = port.read(port.in_waiting or 1)
            except SERIAL_ERRORS as exc:
                self._lost(f"read failed: {exc}")
                continue
            except Exception as exc:  # unforeseen: start over with a fresh port, keep running
                log.exception("bus %s: unexpected error reading the port", self.name)
                self._lost(f"read failed: {type(exc).__name__}: {exc}")
                continue
            if data:
                self._feed(data)
            now = self.clock()
            if now >= next_check:
                next_check = now + PATH_CHECK_S
                problem = self._device_problem()
                if problem:
                    self._lost(problem)
                    continue
            if now - opened_at >= self.backoff_max_s:
                delay = self.backoff_min_s  # stayed up: the next loss retries quickly again

    def _open(self) -> bool:
        try:
            port = self.opener(self.spec)
        except Exception as exc:  # SerialException, OSError, ValueError: all mean "not now"
            self.stats.open_failures += 1
            self._fault(f"cannot open {self.spec.port}: {exc}")
            return False
        device = _device_id(self.spec.port)
        rs485 = enable_rs485(port) if self.spec.rs485 else None
        with self._port_lock:
            self._port, self._device = port, device
        self._bad_before.update(self._decoder.errors)
        self._decoder = codec.Decoder()  # a partial frame from before does not carry over
        self.rs485 = rs485
        self.stats.opens += 1
        if self._faulted:
            self.stats.reopens += 1
            down_s = self.clock() - self._fault_since if self._fault_since is not None else 0.0
            self._faulted, self._fault_since = False, None
            log.warning("bus %s: %s open again after %.1f s", self.name, self.spec.port, down_s)
            self._report_fault(RESTORE, down_s=round(down_s, 3))
        else:
            log.info("bus %s: %s open at %d baud", self.name, self.spec.port, self.spec.baud)
        return True

    def _lost(self, reason: str) -> None:
        self._close_port()
        self._fault(reason)

    def _fault(self, reason: str) -> None:
        if self._faulted:
            return
        self._faulted, self._fault_since = True, self.clock()
        self.stats.faults += 1
        log.error("bus %s: %s", self.name, reason)
        self._report_fault(NEW, error=reason[:200])

    def _report_fault(self, qualifier: str, **data: Any) -> None:
        self._emit_quietly(
            Event(
                kind="bus_fault",
                zone=self.name,
                source=self.name,
                qualifier=qualifier,
                data={"bus": self.name, "port": self.spec.port, **data},
            )
        )

    def _close_port(self) -> None:
        with self._port_lock:
            port, self._port, self._device = self._port, None, None
        if port is not None:
            with contextlib.suppress(*SERIAL_ERRORS):
                port.close()

    def _device_problem(self) -> str | None:
        """Why the open port no longer is the device at the configured path, if it is not."""
        if self._device is None:
            return None
        now = _device_id(self.spec.port)
        if now is None:
            return f"device {self.spec.port} is gone"
        if now != self._device:
            return f"device {self.spec.port} was replaced"
        return None

    def _feed(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            try:
                self._handle(frame)
            except Exception:  # a bug must cost one frame, never the reader thread
                self.stats.handler_errors += 1
                log.exception("bus %s: could not handle %r", self.name, frame)

    # -- one frame (reader thread) --------------------------------------------------------

    def _handle(self, frame: Any) -> None:
        self.stats.frames += 1
        if frame.mtype == codec.ACK:
            self.stats.ignored += 1  # our own ACK echoed by a half-duplex line, or another hub
            return
        node = self._node(frame.node)
        now = self.clock()
        node.last_seen = now
        node.frames += 1
        if node.known and self.supervisor is not None:
            self.supervisor.seen(node.name)
        key = frame.key()
        content = frame.as_tuple()
        with self._lock:
            recent = self._recent.get(key)
            if recent is not None and recent.failed:
                recent = None
            reused = recent is not None and recent.content != content
            if recent is not None and recent.committed and not reused:
                # A copy long after the first is no re-send: the node reused its numbers.
                reused = now - recent.first_seen > self.duplicate_window_s
            if recent is not None and not reused:
                self.stats.duplicates += 1
                if not recent.committed:
                    recent.waiting = min(recent.waiting + 1, MAX_WAITING_ACKS)
                    return  # ACKed when the first copy commits
        if reused:
            self.stats.key_reused += 1
            log.warning(
                "bus %s: node %d sent another message as boot %d seq %d; reporting it",
                self.name,
                frame.node,
                frame.boot,
                frame.seq,
            )
        elif recent is not None:  # a copy of a committed frame
            self._ack(frame, 1)
            return
        events = self._events(frame, node)
        if events is None:
            return  # not understood: no ACK, the node keeps sending and the counters show it
        self._commit_then_ack(frame, content, now, events)

    def _node(self, node_id: int) -> NodeState:
        node = self.nodes.get(node_id)
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
                self.name,
                node_id,
                node_id,
            )
        node = self._unknown.get(node_id)
        if node is None:
            node = NodeState(id=node_id, name=f"node-{node_id}", zone="unknown", known=False)
            if len(self._unknown) < MAX_UNKNOWN_NODES:
                self._unknown[node_id] = node
        return node

    def _events(self, frame: Any, node: NodeState) -> list[Event] | None:
        """The events a new frame reports (updating what is known of the node); None if the
        frame cannot be understood."""
        mtype, payload = frame.mtype, frame.payload
        pos = (frame.boot, frame.seq)
        node.boot = frame.boot
        base: dict[str, Any] = {
            "node": frame.node,
            "bus": self.name,
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
                        self.name,
                        node.name,
                        interval_s,
                        node.heartbeat_s,
                    )
            if not _newer(pos, node.last_event):
                return []  # older than the last event frame: its bits may be stale
            return self._reconcile(node, state, {**base, "mv": millivolts, "level": level})
        if mtype in (codec.ALARM, codec.RESTORE):
            what, level = payload[0], codec.get_u16(payload, 1)
            kind = WHAT_KINDS.get(what)
            if kind is None:
                self.stats.unknown_what += 1
                log.error(
                    "bus %s: node %d sent %s of unknown type %d; not ACKed",
                    self.name,
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
        if _newer(pos, node.last_event):
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
                self.name,
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

    # -- commit, then ACK -----------------------------------------------------------------

    def _commit_then_ack(
        self, frame: Any, content: tuple[Any, ...], now: float, events: Sequence[Event]
    ) -> None:
        entry = _Recent(content=content, first_seen=now, remaining=len(events))
        key = frame.key()
        with self._lock:
            self._recent[key] = entry
            self._recent.move_to_end(key)
            while len(self._recent) > RECENT_KEYS:
                self._recent.popitem(last=False)
        if not events:
            entry.committed = True
            self._ack(frame, 1)
            return
        futures = []
        for event in events:
            try:
                futures.append(self.emit(event))
            except Exception:
                log.exception("bus %s: could not report %s; not ACKed", self.name, event.kind)
                self._forget(key, entry)
                return

        def committed(fut: Future[Any]) -> None:
            """The store thread (or this thread, if already done): ACK once all committed."""
            with self._lock:
                if entry.failed:
                    return
                if fut.cancelled() or fut.exception() is not None:
                    entry.failed = True
                    if self._recent.get(key) is entry:
                        del self._recent[key]
                    failed = True
                else:
                    failed = False
                    entry.remaining -= 1
                    if entry.remaining:
                        return
                    entry.committed = True
                    count, entry.waiting = 1 + entry.waiting, 0
            if failed:
                log.error(
                    "bus %s: commit failed for %r; not ACKed, the node will send it again",
                    self.name,
                    frame,
                )
                return
            self._ack(frame, count)

        for fut in futures:
            fut.add_done_callback(committed)

    def _forget(self, key: tuple[int, int, int], entry: _Recent) -> None:
        with self._lock:
            entry.failed = True
            if self._recent.get(key) is entry:
                del self._recent[key]

    def _ack(self, frame: Any, count: int) -> None:
        """Write ``count`` ACKs for ``frame`` (one per copy received). Any thread; short."""
        data = codec.encode(codec.ACK, frame.node, frame.boot, frame.seq) * count
        with self._port_lock:
            port = self._port
            if port is None:
                self.stats.acks_dropped += count  # the node sends again; we ACK the copy
                return
            try:
                port.write(data)
            except SERIAL_ERRORS as exc:
                self.stats.ack_errors += 1
                log.warning("bus %s: could not write ACK: %s", self.name, exc)
                return
            self.stats.acks += count

    def _emit_quietly(self, event: Event) -> None:
        try:
            self.emit(event)
        except Exception:
            log.exception("bus %s: could not report %s", self.name, event.kind)

    # -- state ----------------------------------------------------------------------------

    def bad_frames(self) -> dict[str, int]:
        """Frames dropped since start, by reason (crc, cobs, short, long, version, type...)."""
        total = Counter(self._bad_before)
        total.update(dict(self._decoder.errors))  # a copy: the reader thread may add a reason
        return dict(sorted(total.items()))

    def health(self) -> dict[str, Any]:
        """Counters and per-node state for the hub's health message."""
        now = self.clock()
        lost = self.supervisor.states() if self.supervisor is not None else {}
        s = self.stats
        return {
            "port": self.spec.port,
            "open": self.is_open,
            "fault": self._faulted,
            "rs485": self.rs485,
            "frames": s.frames,
            "bad_frames": self.bad_frames(),
            "unknown_frames": s.unknown_frames,
            "unknown_nodes": sorted(list(self._unknown)),
            "duplicates": s.duplicates,
            "key_reused": s.key_reused,
            "unknown_what": s.unknown_what,
            "handler_errors": s.handler_errors,
            "acks": s.acks,
            "ack_errors": s.ack_errors + s.acks_dropped,
            "reopens": s.reopens,
            "open_failures": s.open_failures,
            "faults": s.faults,
            "nodes": {
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
                for node in self.nodes.values()
            },
        }


def _device_id(path: str) -> int | None:
    """The device number behind ``path`` (symlinks followed); None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev or None


class SerialBuses:
    """Every bus of a hub, and one supervisor for all their nodes."""

    def __init__(
        self,
        buses: Iterable[BusSpec],
        nodes: Iterable[NodeSpec],
        emit: Emit,
        *,
        opener: Callable[[BusSpec], SerialPort] = open_serial,
        clock: Callable[[], float] = time.monotonic,
        supervisor: Supervisor | None = None,
        **bus_options: Any,
    ) -> None:
        nodes = list(nodes)
        self.supervisor = supervisor or Supervisor(emit, clock=clock)
        for node in nodes:
            self.supervisor.watch(
                node.name,
                window_s=node.heartbeat_s * node.missed,
                kind=node.supervision_kind,
                zone=node.zone,
                data={"node": node.id, "bus": node.bus},
            )
        self.buses = {
            b.name: SerialBus(
                b,
                nodes,
                emit,
                supervisor=self.supervisor,
                opener=opener,
                clock=clock,
                **bus_options,
            )
            for b in buses
        }

    def start(self) -> None:
        for bus in self.buses.values():
            bus.start()
        self.supervisor.start()

    def close(self) -> None:
        self.supervisor.close()
        for bus in self.buses.values():
            bus.close()

    def health(self) -> dict[str, Any]:
        return {name: bus.health() for name, bus in self.buses.items()}

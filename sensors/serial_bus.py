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
* A port that fails (adapter unplugged, device path gone or replaced) or is missing at start
  is reported once as ``bus_fault`` E and reopened with backoff (0.2 s doubling to 5 s) without
  restarting anything; when it opens again ``bus_fault`` R follows.

Which frames are copies, and the ACKs each is owed: ``sensors/recent_frames.py``. Frames to
events and what the hub knows of each node: ``sensors/bus_state.py``. The port's life (open,
backoff, device check, ``bus_fault``): ``sensors/serial_port.py``, shared with the Modbus poller.
Silence is the supervisor's (``sensors/supervision.py``): a frame from a configured node is a
sign of life.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import serial
import serial.rs485

from core.events import Event
from sensors.bus_state import BusStats, NodeState, NodeTracker
from sensors.recent_frames import RecentFrames, Seen
from sensors.serial_port import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    PORT_ERRORS,
    PortLifecycle,
    PortUnavailable,
)
from sensors.supervision import Supervisor

log = logging.getLogger(__name__)

# The codec ships to MicroPython nodes and carries no type annotations; the hub reaches it as
# an untyped module object so that the hub's strict type check does not run over firmware code.
codec: Any = importlib.import_module("firmware_py.codec")

READ_TIMEOUT_S = 0.1
WRITE_TIMEOUT_S = 0.2
PATH_CHECK_S = 0.5
DUPLICATE_WINDOW_S = 300.0

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
        self.stats = BusStats()
        self.tracker = NodeTracker(
            spec.name,
            (
                NodeState(id=n.id, name=n.name, zone=n.zone, known=True, heartbeat_s=n.heartbeat_s)
                for n in nodes
                if n.bus == spec.name
            ),
            self.stats,
            clock=clock,
        )
        self.nodes: dict[int, NodeState] = self.tracker.known
        self.rs485: str | None = None
        self.lifecycle: PortLifecycle[SerialPort] = PortLifecycle(
            spec.port,
            self._open_port,
            self._emit_quietly,
            source=spec.name,
            zone=spec.name,
            data={"bus": spec.name, "port": spec.port},
            log=log,
            label=f"bus {spec.name}",
            port_label=f"bus {spec.name}: {spec.port}",
            reopen_at_once=True,
            stats=self.stats,
            clock=clock,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
        )
        self.recent = RecentFrames(window_s=duplicate_window_s)
        self._bad_before: Counter[str] = Counter()  # decoder errors of earlier openings
        self._decoder: Any = codec.Decoder()
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
        self.lifecycle.close()

    @property
    def is_open(self) -> bool:
        return self.lifecycle.is_open

    # -- the reader thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            port = self.lifecycle.port
            if port is None:
                try:
                    port = self._open()
                except PortUnavailable:
                    self._stop.wait(self.lifecycle.retry_in_s())
                    continue
                next_check = self.clock()
            try:
                data = port.read(port.in_waiting or 1)
            except PORT_ERRORS as exc:
                self.lifecycle.lost(f"read failed: {exc}")
                continue
            except Exception as exc:  # unforeseen: start over with a fresh port, keep running
                log.exception("bus %s: unexpected error reading the port", self.name)
                self.lifecycle.lost(f"read failed: {type(exc).__name__}: {exc}")
                continue
            if data:
                self._feed(data)
            now = self.clock()
            if now >= next_check:
                next_check = now + PATH_CHECK_S
                problem = self.lifecycle.device_problem()
                if problem:
                    self.lifecycle.lost(problem)

    def _open(self) -> SerialPort:
        recovering = self.lifecycle.faulted
        port = self.lifecycle.open()  # reports bus_fault R if it was down
        self._bad_before.update(self._decoder.errors)
        self._decoder = codec.Decoder()  # a partial frame from before does not carry over
        if not recovering:
            log.info("bus %s: %s open at %d baud", self.name, self.spec.port, self.spec.baud)
        return port

    def _open_port(self) -> SerialPort:
        """The lifecycle's opener: the port, in RS-485 mode if configured, before it is used."""
        port = self.opener(self.spec)
        self.rs485 = enable_rs485(port) if self.spec.rs485 else None
        return port

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
        node = self.tracker.node(frame.node)
        now = self.clock()
        node.last_seen = now
        node.frames += 1
        if node.known and self.supervisor is not None:
            self.supervisor.seen(node.name)
        content = frame.as_tuple()
        seen = self.recent.classify(frame.key(), content, now)
        if seen in (Seen.COPY, Seen.COPY_PENDING):
            self.stats.duplicates += 1
            if seen is Seen.COPY:
                self._ack(frame, 1)
            return  # a pending copy is ACKed when the first one commits
        if seen is Seen.REUSED:
            self.stats.key_reused += 1
            log.warning(
                "bus %s: node %d sent another message as boot %d seq %d; reporting it",
                self.name,
                frame.node,
                frame.boot,
                frame.seq,
            )
        events = self.tracker.events(frame, node)
        if events is None:
            return  # not understood: no ACK, the node keeps sending and the counters show it
        self._commit_then_ack(frame, content, now, events)

    # -- commit, then ACK -----------------------------------------------------------------

    def _commit_then_ack(
        self, frame: Any, content: tuple[Any, ...], now: float, events: Sequence[Event]
    ) -> None:
        key = frame.key()
        entry = self.recent.add(key, content, now, len(events))
        if not events:
            self._ack(frame, 1)
            return
        futures = []
        for event in events:
            try:
                futures.append(self.emit(event))
            except Exception:
                log.exception("bus %s: could not report %s; not ACKed", self.name, event.kind)
                self.recent.forget(key, entry)
                return

        def committed(fut: Future[Any]) -> None:
            """The store thread (or this thread, if already done): ACK once all committed."""
            if fut.cancelled() or fut.exception() is not None:
                if self.recent.forget(key, entry):
                    log.error(
                        "bus %s: commit failed for %r; not ACKed, the node will send it again",
                        self.name,
                        frame,
                    )
                return
            count = self.recent.committed(entry)
            if count:
                self._ack(frame, count)

        for fut in futures:
            fut.add_done_callback(committed)

    def _ack(self, frame: Any, count: int) -> None:
        """Write ``count`` ACKs for ``frame`` (one per copy received). Any thread; short."""
        data = codec.encode(codec.ACK, frame.node, frame.boot, frame.seq) * count
        with self.lifecycle.held() as port:
            if port is None:
                self.stats.acks_dropped += count  # the node sends again; we ACK the copy
                return
            try:
                port.write(data)
            except PORT_ERRORS as exc:
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
        lost = self.supervisor.states() if self.supervisor is not None else {}
        s = self.stats
        return {
            "port": self.spec.port,
            "open": self.is_open,
            "fault": self.lifecycle.faulted,
            "rs485": self.rs485,
            "frames": s.frames,
            "bad_frames": self.bad_frames(),
            "unknown_frames": s.unknown_frames,
            "unknown_nodes": self.tracker.unknown_ids(),
            "duplicates": s.duplicates,
            "key_reused": s.key_reused,
            "unknown_what": s.unknown_what,
            "handler_errors": s.handler_errors,
            "acks": s.acks,
            "ack_errors": s.ack_errors + s.acks_dropped,
            "reopens": s.reopens,
            "open_failures": s.open_failures,
            "faults": s.faults,
            "nodes": self.tracker.health(lost),
        }


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

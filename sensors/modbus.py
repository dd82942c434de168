"""Modbus RTU detectors (gas, smoke, fire, heat) polled over a serial line with minimalmodbus.

Each ``[[modbus]]`` entry is one register of one detector. Entries on the same port share one
``ModbusLine``: one open port and one thread that polls each entry when it is due (an RS-485
line carries one request at a time). For each entry:

* the reading (times ``scale``) at or above ``threshold`` reports the entry's kind (E) once;
  it is restored (R) when the reading falls below ``restore_below`` (hysteresis);
* ``missed`` polls in a row without a valid answer report ``supervision`` trouble (E); the next
  good answer restores it (R);
* a port that fails (adapter unplugged, device gone) is closed, reported once as ``bus_fault``
  E, and reopened with backoff (0.2 s doubling to 5 s); ``bus_fault`` R when it opens again
  (``sensors/serial_port.py``, the life of a port the serial bus shares). Polls meanwhile
  count as failed, so the detectors' supervision trouble follows as well. Whether the path
  still names the same device is checked after each poll that went unanswered.

The hub opens the port itself (pyserial) and hands the open port to ``minimalmodbus.Instrument``
so that minimalmodbus's module-wide port cache plays no part in closing and reopening.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import minimalmodbus
import serial

from core.events import NEW, RESTORE, Event
from sensors.serial_port import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    PORT_ERRORS,
    PortLifecycle,
    PortUnavailable,
)

log = logging.getLogger(__name__)


class ModbusSpec(Protocol):
    """What a poller needs from its configuration (config.ModbusConfig fits)."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> str: ...

    @property
    def baud(self) -> int: ...

    @property
    def parity(self) -> str: ...

    @property
    def stopbits(self) -> int: ...

    @property
    def unit(self) -> int: ...

    @property
    def register_address(self) -> int: ...

    @property
    def function(self) -> int: ...

    @property
    def signed(self) -> bool: ...

    @property
    def kind(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def restore_below(self) -> float | None: ...

    @property
    def scale(self) -> float: ...

    @property
    def zone(self) -> str: ...

    @property
    def poll_s(self) -> float: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def missed(self) -> int: ...


def open_line(spec: ModbusSpec) -> serial.Serial:
    """Open a Modbus line with pyserial (8 data bits; baud, parity, stop bits from the spec)."""
    return serial.Serial(
        spec.port,
        spec.baud,
        parity=spec.parity,
        stopbits=spec.stopbits,
        bytesize=8,
        timeout=spec.timeout_s,
        write_timeout=1.0,
        exclusive=True,
    )


class PortLost(Exception):
    """The serial port itself failed (as opposed to a detector not answering)."""


@dataclass
class PointState:
    """One detector register and what the poller knows of it."""

    spec: ModbusSpec
    next_poll: float = 0.0
    value: float | None = None
    raw: int | None = None
    alarm: bool = False
    failures: int = 0  # failed polls in a row
    trouble: bool = False
    polls: int = 0
    failed_polls: int = 0
    last_error: str | None = None
    last_good: float | None = None


class ModbusLine:
    """One serial port with one or more detectors on it, polled by one thread."""

    def __init__(
        self,
        specs: Iterable[ModbusSpec],
        emit: Callable[[Event], object],
        *,
        opener: Callable[[ModbusSpec], Any] = open_line,
        clock: Callable[[], float] = time.monotonic,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.points = [PointState(spec) for spec in specs]
        if not self.points:
            raise ValueError("a Modbus line needs at least one detector")
        self.first = self.points[0].spec
        self.port_name = self.first.port
        self.emit = emit
        self.opener = opener
        self.clock = clock
        self.lifecycle: PortLifecycle[Any] = PortLifecycle(
            self.port_name,
            lambda: opener(self.first),
            self._emit,
            source=self.port_name,
            zone=self.first.zone,
            data={"port": self.port_name, "modbus": [p.spec.name for p in self.points]},
            log=log,
            label=f"modbus line {self.port_name}",
            clock=clock,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"modbus-{self.first.name}", daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        for point in self.points:
            point.next_poll = now
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self.lifecycle.close()

    # -- the poller thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            point = min(self.points, key=lambda p: p.next_poll)
            wait = point.next_poll - self.clock()
            if wait > 0 and self._stop.wait(wait):
                break
            point.next_poll = max(point.next_poll + point.spec.poll_s, self.clock())
            try:
                self._poll(point)
            except Exception:  # never let the poller thread die
                log.exception("modbus %s: poll failed unexpectedly", point.spec.name)

    def _poll(self, point: PointState) -> None:
        spec = point.spec
        point.polls += 1
        try:
            raw = self._read(spec)
        except PortLost as exc:
            self._failed(point, str(exc))
            return
        except (minimalmodbus.ModbusException, ValueError, TypeError) as exc:
            # No answer, a garbled or exception answer: the detector, not the port.
            self._failed(point, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # whatever it is, a poll that gave no reading is a failed one
            log.exception("modbus %s: poll failed unexpectedly", spec.name)
            self._failed(point, f"{type(exc).__name__}: {exc}")
            return
        value = raw * spec.scale
        point.raw, point.value, point.last_good = raw, value, self.clock()
        point.failures = 0
        if point.trouble:
            point.trouble = False
            log.warning("modbus %s answers again", spec.name)
            self._report(point, "supervision", RESTORE)
        restore_below = spec.restore_below if spec.restore_below is not None else spec.threshold
        if not point.alarm and value >= spec.threshold:
            point.alarm = True
            log.warning("modbus %s: %s %.3g >= %.3g", spec.name, spec.kind, value, spec.threshold)
            self._report(point, spec.kind, NEW)
        elif point.alarm and value < restore_below:
            point.alarm = False
            log.warning("modbus %s: %s %.3g < %.3g", spec.name, spec.kind, value, restore_below)
            self._report(point, spec.kind, RESTORE)

    def _read(self, spec: ModbusSpec) -> int:
        port = self._ensure_open()
        try:
            if port.timeout != spec.timeout_s:  # pyserial reconfigures the port on each set
                port.timeout = spec.timeout_s
            instrument = minimalmodbus.Instrument(port, spec.unit)
            instrument.clear_buffers_before_each_transaction = True
            value = instrument.read_register(
                spec.register_address,
                number_of_decimals=0,
                functioncode=spec.function,
                signed=spec.signed,
            )
        except minimalmodbus.ModbusException:
            self._check_device()
            raise
        except PORT_ERRORS as exc:
            self.lifecycle.lost(f"{type(exc).__name__}: {exc}")
            raise PortLost(f"port {self.port_name} failed: {exc}") from exc
        return int(value)

    def _ensure_open(self) -> Any:
        port = self.lifecycle.port
        if port is not None:
            return port
        if not self.lifecycle.due():
            raise PortLost(f"port {self.port_name} is not open")
        try:
            return self.lifecycle.open()
        except PortUnavailable as exc:
            raise PortLost(str(exc)) from exc.__cause__

    def _check_device(self) -> None:
        """After a failed poll: is the port still the device at its path?"""
        problem = self.lifecycle.device_problem()
        if problem:
            self.lifecycle.lost(problem)

    def _failed(self, point: PointState, error: str) -> None:
        spec = point.spec
        point.failures += 1
        point.failed_polls += 1
        point.last_error = error[:200]
        log.debug("modbus %s: poll failed (%d in a row): %s", spec.name, point.failures, error)
        if not point.trouble and point.failures >= spec.missed:
            point.trouble = True
            log.error(
                "modbus %s: no valid answer to %d polls in a row (%s)",
                spec.name,
                point.failures,
                error,
            )
            self._report(point, "supervision", NEW, error=point.last_error)

    # -- events ---------------------------------------------------------------------------

    def _report(self, point: PointState, kind: str, qualifier: str, **extra: Any) -> None:
        spec = point.spec
        data: dict[str, Any] = {
            "modbus": spec.name,
            "port": spec.port,
            "unit": spec.unit,
            "register": spec.register_address,
            "function": spec.function,
        }
        if kind == spec.kind:
            data.update(value=point.value, raw=point.raw, threshold=spec.threshold)
        else:
            data.update(missed=point.failures if qualifier == NEW else 0)
        data.update(extra)
        self._emit(
            Event(kind=kind, zone=spec.zone, source=spec.name, qualifier=qualifier, data=data)
        )

    def _emit(self, event: Event) -> None:
        try:
            self.emit(event)
        except Exception:
            log.exception("modbus: could not report %s from %s", event.kind, event.source)

    # -- state ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = self.clock()
        return {
            p.spec.name: {
                "port": self.port_name,
                "open": self.lifecycle.is_open,
                "fault": self.lifecycle.faulted,
                "reopens": self.lifecycle.stats.reopens,
                "faults": self.lifecycle.stats.faults,
                "value": p.value,
                "alarm": p.alarm,
                "trouble": p.trouble,
                "polls": p.polls,
                "failed_polls": p.failed_polls,
                "failures_in_a_row": p.failures,
                "last_good_s": round(now - p.last_good, 1) if p.last_good is not None else None,
                "last_error": p.last_error,
            }
            for p in self.points
        }


class ModbusPollers:
    """Every ``[[modbus]]`` entry of a hub, grouped into one ``ModbusLine`` per port."""

    def __init__(
        self, specs: Iterable[ModbusSpec], emit: Callable[[Event], object], **line_options: Any
    ) -> None:
        by_port: dict[str, list[ModbusSpec]] = {}
        for spec in specs:
            by_port.setdefault(spec.port, []).append(spec)
        self.lines = [ModbusLine(group, emit, **line_options) for group in by_port.values()]

    def start(self) -> None:
        for line in self.lines:
            line.start()

    def close(self) -> None:
        for line in self.lines:
            line.close()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for line in self.lines:
            out.update(line.health())
        return out

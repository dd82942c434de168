"""Modbus RTU detectors (gas, smoke, fire, heat) polled over a serial line with minimalmodbus.

Each ``[[modbus]]`` entry is one register of one detector. Entries on the same port share one
``ModbusLine``: one open port and one thread that polls each entry when it is due (an RS-485
line carries one request at a time). For each entry:

* the reading (times ``scale``) at or above ``threshold`` reports the entry's kind (E) once;
  it is restored (R) when the reading falls below ``restore_below`` (hysteresis);
* ``missed`` polls in a row without a valid answer report ``supervision`` trouble (E); the next
  good answer restores it (R);
* a port that fails (adapter unplugged, device gone) is closed, reported once as ``bus_fault``
  E, and reopened with backoff (0.2 s doubling to 5 s); ``bus_fault`` R when it opens again.
  Polls meanwhile count as failed, so the detectors' supervision trouble follows as well.

The hub opens the port itself (pyserial) and hands the open port to ``minimalmodbus.Instrument``
so that minimalmodbus's module-wide port cache plays no part in closing and reopening.
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import minimalmodbus
import serial

from core.events import NEW, RESTORE, Event

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0

# What a failing port raises: pyserial's errors, the OS's, and termios' own (not an OSError).
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)


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
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.reopens = 0
        self.faults = 0
        self._port: Any = None
        self._device: int | None = None
        self._faulted = False
        self._fault_since: float | None = None
        self._retry_at = 0.0
        self._delay = backoff_min_s
        self._opened_at = 0.0
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
        self._close_port()

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
            self._lost(f"{type(exc).__name__}: {exc}")
            raise PortLost(f"port {self.port_name} failed: {exc}") from exc
        return int(value)

    def _ensure_open(self) -> Any:
        if self._port is not None:
            return self._port
        now = self.clock()
        if now < self._retry_at:
            raise PortLost(f"port {self.port_name} is not open")
        try:
            port = self.opener(self.first)
        except Exception as exc:
            self._retry_at = now + self._delay
            self._delay = min(self._delay * 2, self.backoff_max_s)
            self._fault(f"cannot open {self.port_name}: {exc}")
            raise PortLost(f"cannot open {self.port_name}: {exc}") from exc
        self._port, self._device = port, _device_id(self.port_name)
        self._opened_at = now
        if self._faulted:
            self.reopens += 1
            down_s = now - self._fault_since if self._fault_since is not None else 0.0
            self._faulted, self._fault_since = False, None
            log.warning("modbus line %s open again after %.1f s", self.port_name, down_s)
            self._report_fault(RESTORE, down_s=round(down_s, 3))
        return port

    def _check_device(self) -> None:
        """After a failed poll: is the port still the device at its path?"""
        if self._device is None:
            return
        now = _device_id(self.port_name)
        if now != self._device:
            self._lost(f"device {self.port_name} is gone" if now is None else "replaced")

    def _lost(self, reason: str) -> None:
        self._close_port()
        if self.clock() - self._opened_at >= self.backoff_max_s:
            self._delay = self.backoff_min_s  # it stayed up: retry quickly again
        self._retry_at = self.clock() + self._delay
        self._delay = min(self._delay * 2, self.backoff_max_s)
        self._fault(reason)

    def _fault(self, reason: str) -> None:
        if self._faulted:
            return
        self._faulted, self._fault_since = True, self.clock()
        self.faults += 1
        log.error("modbus line %s: %s", self.port_name, reason)
        self._report_fault(NEW, error=reason[:200])

    def _close_port(self) -> None:
        port, self._port, self._device = self._port, None, None
        if port is not None:
            with contextlib.suppress(*PORT_ERRORS):
                port.close()

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

    def _report_fault(self, qualifier: str, **extra: Any) -> None:
        self._emit(
            Event(
                kind="bus_fault",
                zone=self.first.zone,
                source=self.port_name,
                qualifier=qualifier,
                data={
                    "port": self.port_name,
                    "modbus": [p.spec.name for p in self.points],
                    **extra,
                },
            )
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
                "open": self._port is not None,
                "fault": self._faulted,
                "reopens": self.reopens,
                "faults": self.faults,
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


def _device_id(path: str) -> int | None:
    try:
        return os.stat(path).st_rdev or None
    except OSError:
        return None


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

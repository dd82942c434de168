"""One serial port's life: opened, watched, reported once when it fails, reopened with backoff.

The serial sensor bus (``sensors/serial_bus.py``) and the Modbus poller (``sensors/modbus.py``)
each own a port that can go away under them: a USB adapter unplugged, its device node removed,
or another device given the same path (unplugged and plugged in again, another adapter taking
the name). ``PortLifecycle`` is that life, the same for both:

* ``open()`` calls the owner's opener. A failure is reported as ``bus_fault`` E and the next
  attempt is due one backoff step later (0.2 s doubling to 5 s).
* An open port remembers the device number behind its path; ``device_problem()`` says when the
  path no longer names that device (gone, or replaced).
* ``lost(reason)`` closes the port and reports the fault. A port that stayed open for the
  longest backoff step starts again from the shortest.
* A fault is reported once, however many attempts fail after it; the next successful open
  reports ``bus_fault`` R with how long the port was down (``down_s``).

The owner decides what a failure is (a read error, a poll unanswered on a replaced device) and
when to look; the lifecycle owns the port object, the backoff and the events. The owner's
thread opens, checks and closes; other threads reach the open port only through ``held()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import serial

from core.events import NEW, RESTORE, Event

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
ERROR_CHARS = 200  # of a fault's reason, in the event

# What a failing port raises: pyserial's errors, the OS's, and termios' own (not an OSError).
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)


class Closable(Protocol):
    def close(self) -> None: ...


PortT = TypeVar("PortT", bound=Closable)


@dataclass
class PortStats:
    """Counters of one port since start (read by health)."""

    opens: int = 0
    open_failures: int = 0
    reopens: int = 0  # opens that ended a fault
    faults: int = 0


class PortUnavailable(Exception):
    """The port could not be opened; the message is the reason its fault gives."""


def device_id(path: str) -> int | None:
    """The device number behind ``path`` (symlinks followed); None if there is none."""
    try:
        return os.stat(path).st_rdev or None
    except OSError:
        return None


class PortLifecycle(Generic[PortT]):
    """The port at ``path``, opened by ``opener``; its faults go to ``emit`` as ``bus_fault``
    events from ``source`` in ``zone`` carrying ``data``.

    ``emit`` must not raise (the owner's own reporting, which logs what it cannot hand on).
    ``label`` begins the fault log lines ("bus bus-1: device /dev/ttyUSB0 is gone");
    ``port_label`` names the port in "... open again after 2.0 s" (``label`` if not given).
    ``reopen_at_once``: after a loss the next attempt is due at once rather than a backoff step
    later (the bus reader tries again straight away: a read error may be a passing glitch).
    ``stats`` lets the owner keep these counters with its own.
    """

    def __init__(
        self,
        path: str,
        opener: Callable[[], PortT],
        emit: Callable[[Event], object],
        *,
        source: str,
        zone: str,
        data: Mapping[str, Any],
        log: logging.Logger,
        label: str,
        port_label: str | None = None,
        reopen_at_once: bool = False,
        stats: PortStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.path = path
        self.opener = opener
        self.emit = emit
        self.source = source
        self.zone = zone
        self.data = dict(data)
        self.log = log
        self.label = label
        self.port_label = port_label if port_label is not None else label
        self.reopen_at_once = reopen_at_once
        self.stats = stats if stats is not None else PortStats()
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._lock = threading.Lock()  # the port object: swapped here, written through held()
        self._port: PortT | None = None
        self._device: int | None = None  # st_rdev of the device the open port is
        self._opened_at = 0.0
        self._delay = backoff_min_s  # the next backoff step
        self._retry_at = 0.0
        self._faulted = False
        self._fault_since: float | None = None

    # -- state ----------------------------------------------------------------------------

    @property
    def port(self) -> PortT | None:
        """The open port, or None (for the owner's thread; any other uses ``held()``)."""
        return self._port

    @property
    def is_open(self) -> bool:
        return self._port is not None

    @property
    def faulted(self) -> bool:
        """A fault has been reported and the port has not opened since."""
        return self._faulted

    @contextlib.contextmanager
    def held(self) -> Iterator[PortT | None]:
        """The open port (or None), not closed or replaced until the block ends."""
        with self._lock:
            yield self._port

    def due(self) -> bool:
        """Whether the next attempt to open is due."""
        return self.clock() >= self._retry_at

    def retry_in_s(self) -> float:
        """Seconds until the next attempt to open is due (0 if it is)."""
        return max(0.0, self._retry_at - self.clock())

    # -- open, check, lose, close ---------------------------------------------------------

    def open(self) -> PortT:
        """Open the port now; raises PortUnavailable (after reporting the fault) if it cannot."""
        now = self.clock()
        try:
            port = self.opener()
        except Exception as exc:  # SerialException, OSError, ValueError: all mean "not now"
            reason = f"cannot open {self.path}: {exc}"
            self.stats.open_failures += 1
            self._back_off(now)
            self._fault(reason)
            raise PortUnavailable(reason) from exc
        device = device_id(self.path)
        with self._lock:
            self._port, self._device = port, device
        self._opened_at = now
        self.stats.opens += 1
        if self._faulted:
            self.stats.reopens += 1
            down_s = self.clock() - self._fault_since if self._fault_since is not None else 0.0
            self._faulted, self._fault_since = False, None
            self.log.warning("%s open again after %.1f s", self.port_label, down_s)
            self._report(RESTORE, down_s=round(down_s, 3))
        return port

    def device_problem(self) -> str | None:
        """Why the open port no longer is the device at its path, if it is not."""
        if self._device is None:
            return None
        now = device_id(self.path)
        if now is None:
            return f"device {self.path} is gone"
        if now != self._device:
            return f"device {self.path} was replaced"
        return None

    def lost(self, reason: str) -> None:
        """The open port failed: close it, report the fault, schedule the next attempt."""
        self.close()
        now = self.clock()
        if now - self._opened_at >= self.backoff_max_s:
            self._delay = self.backoff_min_s  # it stayed up: retry quickly again
        if self.reopen_at_once:
            self._retry_at = now
        else:
            self._back_off(now)
        self._fault(reason)

    def close(self) -> None:
        with self._lock:
            port, self._port, self._device = self._port, None, None
        if port is not None:
            with contextlib.suppress(*PORT_ERRORS):
                port.close()

    # -- inside ---------------------------------------------------------------------------

    def _back_off(self, now: float) -> None:
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, self.backoff_max_s)

    def _fault(self, reason: str) -> None:
        if self._faulted:
            return
        self._faulted, self._fault_since = True, self.clock()
        self.stats.faults += 1
        self.log.error("%s: %s", self.label, reason)
        self._report(NEW, error=reason[:ERROR_CHARS])

    def _report(self, qualifier: str, **extra: Any) -> None:
        self.emit(
            Event(
                kind="bus_fault",
                zone=self.zone,
                source=self.source,
                qualifier=qualifier,
                data={**self.data, **extra},
            )
        )

"""Tells systemd how the process is doing: the ``sd_notify`` protocol, without libsystemd.

systemd passes a Unix datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for Linux's
abstract namespace) and, with ``WatchdogSec=``, the interval in ``$WATCHDOG_USEC`` (and the pid
it is meant for in ``$WATCHDOG_PID``). Each message is one datagram of ``KEY=value`` lines:
``READY=1`` once started (``Type=notify``), ``STOPPING=1`` when shutting down, ``STATUS=...``
for ``systemctl status``, and ``WATCHDOG=1`` as proof of life: a unit with ``WatchdogSec=`` that
hears none for that long is killed and, with ``Restart=``, started again.

Outside systemd (no ``$NOTIFY_SOCKET``) every method does nothing. Nothing here raises: a
notification that cannot be sent is logged once and the process runs on, since a hub must never
stop because its supervisor is unreachable. Sends never block (``MSG_DONTWAIT``): the watchdog is
pinged from the store thread, which must not wait on PID 1.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Notifications to systemd; every method may be called from any thread."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``address`` as in ``$NOTIFY_SOCKET`` (None: not under systemd, all no-ops);
        ``watchdog_interval_s`` is ``WatchdogSec=`` (None: no watchdog)."""
        self.address = address or None
        self._target = _socket_address(self.address) if self.address else None
        if self.address and self._target is None:
            log.warning("NOTIFY_SOCKET %r is not a path or @name; not notifying systemd", address)
        if watchdog_interval_s is not None and watchdog_interval_s <= 0:
            watchdog_interval_s = None
        self.watchdog_interval_s = watchdog_interval_s if self._target is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failing = False  # the last send failed (logged once until one succeeds again)
        self._last_ping: float | None = None
        self.sent = 0  # datagrams sent, for tests and health

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier systemd set up for this process, as ``sd_watchdog_enabled`` reads it:
        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or this process's pid."""
        env = os.environ if env is None else env
        interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec:
            try:
                interval = int(usec) / 1e6
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not a number of microseconds; ignored", usec[:40])
            if pid and pid != str(os.getpid()):
                interval = None  # meant for another process (the one that exec'd us, say)
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval_s=interval)

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def ready(self) -> None:
        """Started: systemd moves a ``Type=notify`` unit to active (main thread)."""
        self._send("READY=1")

    def stopping(self) -> None:
        """Shutting down on purpose: what follows is not a hang."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """One line for ``systemctl status``."""
        self._send("STATUS=" + " ".join(text.split())[:200])

    def watchdog(self) -> None:
        """Proof of life, sent at most once per half watchdog interval however often it is
        called (the store thread calls it at every turn)."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < interval / 2:
            return
        self._last_ping = now
        self._send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, message: str) -> None:
        target = self._target
        if target is None:
            return
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(message.encode(), socket.MSG_DONTWAIT, target)
            except OSError as exc:
                if not self._failing:
                    log.warning("could not notify systemd (%s): %s", message.split("=")[0], exc)
                self._failing = True
                return
            if self._failing:
                log.info("notifying systemd again")
                self._failing = False
            self.sent += 1


def _socket_address(address: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as ``sendto`` takes it: ``@name`` is ``\\0name`` (abstract)."""
    if address.startswith("@") and len(address) > 1:
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    return None  # e.g. systemd 254's vsock: addresses, for virtual machines

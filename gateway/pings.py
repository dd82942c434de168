"""The uplink's pings: numbered, sent to the hub's own ``ping`` topic, timed by their echo.

The PUBACK of a ping proves the broker reachable, its echo that the broker routes to us; the
time from send to echo is health's ``rtt_ms``. Thread-safe: the watch thread sends, paho's
thread sees PUBACKs and echoes."""

from __future__ import annotations

import json
import threading
import time

FORGET_AFTER_S = 60.0  # a ping unanswered this long is never matched
MAX_UNACKED = 64  # more ping PUBACKs than this outstanding: they were lost with a connection


class Pings:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.rtt_ms: float | None = None
        self.sent = 0
        self.echoes = 0
        self._lock = threading.Lock()
        self._times: dict[int, float] = {}  # ping number -> monotonic time sent
        self._n = 0
        self._next = 0.0
        self._mids: set[int] = set()  # pings not yet PUBACKed (kept from the uplink's handlers)

    def restart(self, now: float) -> None:
        """A new connection: earlier pings will never be echoed; the next one is due now."""
        with self._lock:
            self._times.clear()
            self._next = now

    def due(self, now: float) -> bool:
        return now >= self._next

    def next_payload(self, now: float) -> bytes:
        """The next ping to publish (QoS 1); pass its mid to ``published``."""
        with self._lock:
            self._n += 1
            self._times[self._n] = now
            for old in [k for k, sent in self._times.items() if now - sent > FORGET_AFTER_S]:
                del self._times[old]
            self._next = now + self.interval_s
            payload = {"n": self._n, "ts": round(time.time(), 3)}
        self.sent += 1
        return json.dumps(payload, separators=(",", ":")).encode()

    def published(self, mid: int) -> None:
        with self._lock:
            if len(self._mids) > MAX_UNACKED:
                self._mids.clear()
            self._mids.add(mid)  # a PUBACK quicker than this goes to the handlers: harmless

    def is_ping(self, mid: int) -> bool:
        """This PUBACK is a ping's (and is forgotten)."""
        with self._lock:
            if mid in self._mids:
                self._mids.discard(mid)
                return True
            return False

    def echoed(self, n: int) -> None:
        """Ping ``n`` came back: the round trip (an echo from before a reconnect is ignored)."""
        with self._lock:
            sent = self._times.pop(n, None)
            if sent is None:
                return
            for older in [k for k in self._times if k < n]:
                del self._times[older]
            self.rtt_ms = round((time.monotonic() - sent) * 1000.0, 1)
        self.echoes += 1

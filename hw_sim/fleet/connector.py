"""Opening connections off the loops' threads, at a bounded rate.

paho opens a connection with a blocking ``socket.create_connection`` (up to its connect
timeout against a broker that does not answer). Done on a loop's thread it would stall every
hub of that loop, so a few connector threads do it. While a hub is connecting nothing else
touches its client: the loop calls neither ``loop_misc`` nor ``publish`` for a hub that is not
connected, and the socket callbacks paho makes from here are handed to the loop's thread
(``light_hub.py``).

The rate limit spreads a storm of connects (thousands of hubs at start, or after a broker
restart) over time, as the hubs' own random backoff does, so the broker's listen queue does
not overflow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Connector:
    def __init__(self, threads: int = 2, rate_per_s: float = 500.0) -> None:
        self.rate_per_s = rate_per_s
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()
        self._threads = [
            threading.Thread(target=self._run, name=f"fleet-connect-{n}", daemon=True)
            for n in range(threads)
        ]
        self.attempts = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> None:
        """Run ``job`` (a hub's connect, which never raises) on a connector thread."""
        self._jobs.put(job)

    def _wait_turn(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.rate_per_s
        if slot > now:
            time.sleep(slot - now)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._wait_turn()
            self.attempts += 1
            try:
                job()
            except Exception:
                log.exception("connect job failed")

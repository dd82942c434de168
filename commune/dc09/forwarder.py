"""``Dc09Forwarder``: the follower and the sender of the DC-09 forwarder, on one store.

- the **follower** thread (``dc09-follow``) queues the new events (``Dc09Queue.follow``) when
  woken (the receiver calls ``wake`` after each commit) and at least every ``FOLLOW_S``;
- the **sender** thread (``dc09-send``, ``commune.dc09.sender``) delivers the queue.

Both use one ``Db`` (given, or opened on the path given). ``stats()`` may be called from any
thread: the sender's counters, the link's condition, and the queue's rows by state.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from commune.db import OPEN_ERRORS, STORE_ERRORS, Db, open_db
from commune.dc09.config import Dc09Config
from commune.dc09.follow import SQLITE, FollowSql
from commune.dc09.queue import Dc09Queue
from commune.dc09.sender import Dc09Sender
from commune.leader import Leadership
from commune.receiver import ReceiverError
from commune.store import EventStore

log = logging.getLogger(__name__)

FOLLOW_S = 0.25  # the longest a stored event waits to be queued without a wake
STORE_RETRY_S = 1.0


class Dc09Forwarder:
    """``start()`` to forward, ``stop()``; ``stats()`` at any time. Raises ``ReceiverError``
    when the store cannot be opened."""

    def __init__(
        self, db_or_path: Db | str | Path, config: Dc09Config, follow_sql: FollowSql = SQLITE
    ) -> None:
        try:
            if isinstance(db_or_path, Db):
                self.db, self._own_db = db_or_path, False
            else:
                # The events table is the receiver's; made here too so the forwarder may start
                # first.
                EventStore(db_or_path).close()
                self.db, self._own_db = open_db(db_or_path), True
            self.queue = Dc09Queue(self.db, config, follow_sql)
        except OPEN_ERRORS as exc:
            raise ReceiverError(f"the DC-09 forwarder cannot open its store: {exc}") from exc
        self.config = config
        # Several receivers or consoles on one store: one of them forwards.
        self.leadership = Leadership(self.db.location, "dc09")
        self.sender = Dc09Sender(self.queue, config, may_send=lambda: self.leadership.held)
        self._followed = {"queued": 0, "passed": 0, "skipped": 0}
        self._store_failing = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._follow_once()  # the position exists before the receiver stores anything new
        self._thread = threading.Thread(target=self._run, name="dc09-follow", daemon=True)
        self._thread.start()
        self.sender.start()
        log.info(
            "DC-09: forwarding priorities %s to %s:%d%s",
            ", ".join(str(p) for p in self.config.priorities),
            self.config.host,
            self.config.port,
            " (AES)" if self.config.key is not None else "",
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.sender.stop(timeout)
        self.leadership.release()
        if self._own_db:
            self.db.close()

    def wake(self) -> None:
        """Look for new events now (call it after the receiver committed some)."""
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """What was done so far: the sender's counters and condition, what the follower did in
        this run, and the queue's rows by state (``queue``: pending, delivered, refused)."""
        out = self.sender.counters.snapshot()
        out["followed"] = dict(self._followed)
        try:
            out["queue"] = self.queue.counts()
        except STORE_ERRORS as exc:
            out["queue"] = {"error": str(exc)}
        return out

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = FOLLOW_S if self._follow_once() else STORE_RETRY_S
            self._wake.wait(wait)
            self._wake.clear()

    def _follow_once(self) -> bool:
        if not self.leadership.try_take():
            return True
        try:
            done = self.queue.follow()
        except STORE_ERRORS as exc:
            self.sender.counters.add("store_errors")
            if not self._store_failing:
                self._store_failing = True
                log.error("DC-09: cannot queue new events (%s); retrying", exc)
            return False
        if self._store_failing:
            self._store_failing = False
            log.info("DC-09: queueing new events again")
        self._followed["queued"] += done.queued
        self._followed["passed"] += done.passed
        self._followed["skipped"] += done.skipped
        if done.queued:
            self.sender.wake()
        return True

    def __enter__(self) -> Dc09Forwarder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""One holder of a duty per store: which of several consoles on one store runs the desk's own
work (following events into alerts, supervising hubs, escalating, sending notifications,
forwarding to a monitoring centre).

Any number of ``tuquan console`` processes may serve the pages and take operators' actions on
one store; those duties must run once, or every alert would open twice and every phone ring
twice. The holder is whoever holds a lock that dies with its process:

- on PostgreSQL, a session advisory lock (``pg_try_advisory_lock``) on a connection of its
  own: when the holder's process, machine or connection dies, the server ends its session and
  the lock goes with it; after a failover the new primary has no lock at all, and the first
  to ask takes it (the old holder finds its connection broken at its next check and stops);
- on SQLite, an exclusive ``flock`` on ``<store>.<duty>.lock`` beside the file (one machine:
  the kernel drops it with the process).

``try_take()`` is cheap enough to call every round: it answers from memory between checks
and looks again at most every ``CHECK_S``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from commune.db import is_postgres_url, shown_location

log = logging.getLogger(__name__)

CHECK_S = 1.0


def lock_key(duty: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``duty``."""
    return int.from_bytes(
        hashlib.sha256(f"tuquan:{duty}".encode()).digest()[:8], "big", signed=True
    )


class Leadership:
    """Whether this process holds ``duty`` on the store at ``location``."""

    def __init__(self, location: str | Path, duty: str, *, clock: Any = time.monotonic) -> None:
        self.location = location
        self.duty = duty
        self._clock = clock
        self._held = False
        self._checked_at = float("-inf")
        self._pg: Any = None  # psycopg connection, on PostgreSQL
        self._fd: int | None = None  # the lock file, on SQLite

    @property
    def held(self) -> bool:
        return self._held

    def try_take(self) -> bool:
        """True while this process holds the duty; takes it when free."""
        now = self._clock()
        if now - self._checked_at < CHECK_S:
            return self._held
        self._checked_at = now
        was = self._held
        try:
            self._held = self._check_pg() if is_postgres_url(self.location) else self._check_file()
        except Exception as exc:  # the store is away: nobody here may act as holder
            if was:
                log.warning("%s: no longer the holder (%s)", self.duty, exc)
            self._release_quietly()
            self._held = False
        if self._held != was:
            log.info(
                "%s on %s: %s",
                self.duty,
                shown_location(self.location),
                "this process holds it" if self._held else "held by another process",
            )
        return self._held

    def _check_pg(self) -> bool:
        import psycopg

        from commune.pg import with_defaults

        conn = self._pg
        if conn is not None and (conn.closed or conn.broken):
            self._release_quietly()
            conn = None
        if conn is None:
            conn = psycopg.connect(
                with_defaults(str(self.location), f"tuquan-{self.duty}"), autocommit=True
            )
            self._pg = conn
        if self._held:
            conn.execute("SELECT 1")  # the session (and its lock) is alive
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.duty),)).fetchone()
        return bool(row and row[0])

    def _check_file(self) -> bool:
        if self._fd is not None:
            return True
        path = Path(f"{self.location}.{self.duty}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _release_quietly(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception as exc:
                log.debug("closing the %s connection: %s", self.duty, exc)
            self._pg = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Give the duty up (the lock's connection or file closed)."""
        self._release_quietly()
        self._held = False


__all__ = ["Leadership", "lock_key"]

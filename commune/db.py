"""One SQLite connection to the receiver's store, shared by the threads of one process.

The receiver's writer thread keeps its own connection (``commune.store.EventStore``). The police
console's parts (alerts, hubs, audit, notifications, users) share one ``Db`` per process: every
statement runs under its lock, and ``tx()`` is one ``BEGIN IMMEDIATE ... COMMIT``, so a
multi-statement change is all or nothing even against other processes on the same file
(``tuquan watch`` acknowledging, ``tuquan receive`` storing).

The file is in WAL mode with ``synchronous=FULL``: a change that returned is on the disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

Params = Sequence[Any] | dict[str, Any]


class Db:
    """A thread-safe SQLite connection: ``read`` for queries, ``tx`` for changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        # Autocommit: transactions are explicit, in tx().
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")

    def read(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Every row of one query."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
            return row

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled
        back if it raises. Nested use joins the outer transaction."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def schema(self, statements: Sequence[str]) -> None:
        """Run DDL statements (``CREATE ... IF NOT EXISTS``) in one transaction."""
        with self.tx() as conn:
            for statement in statements:
                conn.execute(statement)

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # SQLite may have rolled back by itself (full disk)
            log.warning("rollback of %s failed: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

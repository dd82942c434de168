"""The receiver's store: one SQLite file (one commune, the embedded default) or a PostgreSQL
database (a province: any number of receivers and consoles, a synchronous standby).

``open_db(location)`` gives a ``Db`` for either: a file path, or a libpq URL
(``postgresql://user@primary,standby/tuquan?target_session_attrs=read-write``). Both have the
same small interface, used by every part of the store (events, alerts, hubs, audit,
notifications, accounts) and shared by the threads of one process:

- ``read(sql, params)`` / ``read_one``: a query; rows are read by column name or position;
- ``tx()``: one write transaction, committed when the block ends (on PostgreSQL with a
  synchronous standby: on two machines), rolled back if it raises;
- ``schema(statements)``: ``CREATE ... IF NOT EXISTS`` statements, run by one process at a time;
- ``migrate(name, statements)``: a change of schema applied once per store, recorded in
  ``schema_migrations``;
- ``data_version()``: changes whenever another connection committed.

SQL is written once, in the dialect both understand: ``?`` placeholders, ``INSERT ... ON
CONFLICT``, ``RETURNING``, and ``rowid`` for the order rows were stored in (SQLite's own; on
PostgreSQL a column of that name, see ``postgres_ddl``). The PostgreSQL twin translates the
placeholders, and DDL through ``postgres_ddl``.

The SQLite file is in WAL mode with ``synchronous=FULL``: a change that returned is on the disk.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg

from core.events import utc_now_iso

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
MIGRATIONS = "schema_migrations"

Params = Sequence[Any] | dict[str, Any]

# What either database raises: for ``except`` clauses that hold on both.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
# ... and what opening a store raises (an unreadable folder, a damaged file, no server).
OPEN_ERRORS: tuple[type[Exception], ...] = (OSError, *STORE_ERRORS)


class Row(Protocol):
    """A row read by column name (``row["hub"]``) or position (``row[0]``); ``dict(row)``."""

    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What ``tx()`` yields: ``execute`` inside the transaction."""

    def execute(self, sql: str, params: Params = ..., /) -> Any: ...


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_db(location: str | Path) -> Db:
    """The store at ``location``: a PostgreSQL URL, else a SQLite file path."""
    if is_postgres_url(location):
        from commune.pg import PostgresDb

        return PostgresDb(str(location))
    return Db(Path(location))


def shown_location(location: str | Path) -> str:
    """``location`` for logs and messages: a URL without its password."""
    if is_postgres_url(location):
        return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(location))
    return str(location)


class Db:
    """A thread-safe SQLite connection: ``read`` for queries, ``tx`` for changes.

    Every statement runs under one lock, and ``tx()`` is one ``BEGIN IMMEDIATE ... COMMIT``,
    so a multi-statement change is all or nothing even against other processes on the same
    file (``tuquan watch`` acknowledging, ``tuquan receive`` storing)."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._lock = threading.RLock()
        # Autocommit: transactions are explicit, in tx().
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")

    def read(self, sql: str, params: Params = ()) -> list[Any]:
        """Every row of one query."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Params = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    @contextmanager
    def tx(self, *, durable: bool = True, notify: bool = True) -> Iterator[Any]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled
        back if it raises. Nested use joins the outer transaction. ``durable=False`` commits
        without waiting for the disk (a position that may be replayed, never an event);
        ``notify`` is PostgreSQL's (SQLite's ``data_version`` sees every commit)."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            if not durable:
                self._conn.execute("PRAGMA synchronous=OFF")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")

    def schema(self, statements: Sequence[str], *, rowid_tables: Sequence[str] = ()) -> None:
        """Run DDL statements (``CREATE ... IF NOT EXISTS``) in one transaction.
        ``rowid_tables`` matters on PostgreSQL only (SQLite has its rowid)."""
        with self.tx() as conn:
            for statement in statements:
                conn.execute(statement)

    def schema_native(self, statements: Sequence[str]) -> None:
        """DDL in this store's own dialect, as written (``dialect`` says which)."""
        with self.tx() as conn:
            for statement in statements:
                conn.execute(statement)

    def migrate(self, name: str, statements: Sequence[str]) -> bool:
        """Apply a change of schema once per store; True if it was applied now."""
        with self.tx() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS} "
                "(name TEXT PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = conn.execute(f"SELECT 1 FROM {MIGRATIONS} WHERE name = ?", (name,)).fetchone()
            if done is not None:
                return False
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS} (name, applied_at) VALUES (?, ?)",
                (name, utc_now_iso()),
            )
        log.info("store %s: migration %s applied", self.location, name)
        return True

    def has_table(self, name: str) -> bool:
        row = self.read_one(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return bool(row[0])

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.read(f"PRAGMA table_info({table})")}

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def events_write_lock(self, conn: Any) -> None:
        """Inside ``tx()``, before inserting into ``events``: on SQLite ``BEGIN IMMEDIATE``
        already serialises writers, so rowids are in commit order."""

    def write_in_order(self, conn: Any, table: str) -> None:
        """Inside ``tx()``, before inserting into ``table`` rows whose ids readers follow
        (``id > last seen``): the same guarantee as ``events_write_lock``."""

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


# SQLite DDL as PostgreSQL: SQLite's integers are 64-bit (PostgreSQL's INTEGER is not), its
# REAL a double, its BLOB bytes; the implicit rowid some tables are read in order of becomes a
# column of that name.
_DDL = [
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID\s*$"), ")"),
]
_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE IF NOT EXISTS (\w+) \(", re.IGNORECASE)
ROWID_COLUMN = "rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE"


def postgres_ddl(statement: str, *, rowid: bool = False) -> str:
    """One SQLite DDL statement as PostgreSQL's; ``rowid`` adds the ``rowid`` column."""
    out = statement
    for pattern, replacement in _DDL:
        out = pattern.sub(replacement, out)
    if rowid:
        out = _CREATE_TABLE.sub(lambda m: f"{m.group(0)}\n        {ROWID_COLUMN},", out, count=1)
    return out


__all__ = [
    "INTEGRITY_ERRORS",
    "OPEN_ERRORS",
    "POSTGRESQL",
    "STORE_ERRORS",
    "SQLITE",
    "Connection",
    "Cursor",
    "Db",
    "Row",
    "is_postgres_url",
    "open_db",
    "postgres_ddl",
    "shown_location",
]

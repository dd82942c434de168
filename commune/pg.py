"""The store on PostgreSQL: ``commune.db.Db``'s twin over psycopg 3.

One connection for statements (autocommit; ``tx()`` is an explicit transaction), one more that
only LISTENs, for ``data_version``. Both connect through the URL as given, so a libpq
multi-host URL (``postgresql://app@db1,db2/tuquan``) finds the primary after a failover:
``target_session_attrs=read-write`` is added where the URL does not say.

A connection that breaks (the primary killed, a failover, a restart) is dropped; the error is
raised to the caller, who treats it as transient (``commune.storing``), and the next statement
connects again.

"Committed" means what the server's ``synchronous_commit`` says (docs/province.md). With a
synchronous standby, a COMMIT returns once the standby has the transaction; if the wait is
cancelled (an administrator, a ``pg_cancel_backend``) PostgreSQL ends it with a WARNING that the
transaction "might not have been replicated" and reports success: ``tx()`` turns that into
``Unreplicated``, so no receipt is sent on the strength of it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.errors import Diagnostic

from commune.db import MIGRATIONS, POSTGRESQL, Db, Params, postgres_ddl, shown_location
from core.events import utc_now_iso

log = logging.getLogger(__name__)

CHANNEL = "tuquan_changes"
# pg_advisory_xact_lock keys: one per purpose, shared by every process on the database.
SCHEMA_LOCK = 7_305_001
EVENTS_LOCK = 7_305_002
CONNECT_TIMEOUT_S = 10


class Unreplicated(psycopg.OperationalError):
    """COMMIT returned without the synchronous standby's confirmation."""


class PgRow:
    """A row read by column name or position, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    description = cursor.description or ()
    index = {column.name: i for i, column in enumerate(description)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


_NAMED = re.compile(r"(?<!:):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def translate(sql: str, named: bool = False) -> str:
    """``?`` (or ``:name``) placeholders as psycopg's, a literal ``%`` escaped."""
    out = sql.replace("%", "%%")
    if named:
        return _NAMED.sub(r"%(\1)s", out)
    return out.replace("?", "%s")


class _Conn:
    """What ``tx()`` yields: ``execute`` with the store's SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._pg = conn

    def execute(self, sql: str, params: Params = ()) -> psycopg.Cursor[Any]:
        named = isinstance(params, dict)
        return self._pg.execute(translate(sql, named), params or None)


def with_defaults(url: str, application_name: str) -> str:
    """``url`` with what a writer needs where it does not say: the primary of a multi-host
    URL, a connect timeout, the application's name in ``pg_stat_activity``."""
    given = pg_conninfo.conninfo_to_dict(url)
    extra: dict[str, Any] = {}
    if "target_session_attrs" not in given:
        extra["target_session_attrs"] = "read-write"
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in given:
        extra["application_name"] = application_name
    return pg_conninfo.make_conninfo(url, **extra)


class PostgresDb(Db):
    """See the module docstring. Every method of ``Db`` (the SQLite store, and the interface
    the store's parts are written to) is its own here; none of SQLite's runs."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, application_name: str = "tuquan") -> None:
        self.location = shown_location(url)
        self._url = with_defaults(url, application_name)
        self._lock = threading.RLock()
        self._pg: psycopg.Connection[Any] | None = None
        self._listen: psycopg.Connection[Any] | None = None
        self._own_pids: set[int] = set()
        self._version = 0
        self._in_tx = False
        self._unreplicated = ""
        self._connection()  # fail at open, not at the first statement

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._pg
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            self._drop()
        conn = psycopg.connect(self._url, autocommit=True, row_factory=_row_factory)
        conn.add_notice_handler(self._on_notice)
        self._own_pids.add(conn.info.backend_pid)
        self._pg = conn
        return conn

    def _drop(self) -> None:
        if self._pg is not None:
            with suppress(psycopg.Error):
                self._pg.close()
        self._pg = None

    def _on_notice(self, diag: Diagnostic) -> None:
        message = diag.message_primary or ""
        if "synchronous replication" in message or "might not have been replicated" in message:
            self._unreplicated = message
        elif diag.severity in ("WARNING", "ERROR"):
            log.warning("store %s: %s", self.location, message)

    @contextmanager
    def _using(self) -> Iterator[psycopg.Connection[Any]]:
        """The live connection; one that breaks under us is dropped, the error raised."""
        conn = self._connection()
        try:
            yield conn
        except psycopg.OperationalError:
            if conn.broken or conn.closed:
                self._drop()
            raise

    # -- the Db interface ------------------------------------------------------------------

    def read(self, sql: str, params: Params = ()) -> list[Any]:
        with self._lock, self._using() as conn:
            return _Conn(conn).execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Params = ()) -> Any:
        with self._lock, self._using() as conn:
            return _Conn(conn).execute(sql, params).fetchone()

    @contextmanager
    def tx(self, *, durable: bool = True, notify: bool = True) -> Iterator[Any]:
        """One transaction, committed when the block ends. ``durable=False`` commits without
        waiting for the disk or the standby; ``notify`` tells other connections' ``data_version``
        (left out for the events, which nobody polls that way)."""
        with self._lock:
            if self._in_tx:
                yield _Conn(self._connection())
                return
            with self._using() as conn:
                self._unreplicated = ""
                self._in_tx = True
                try:
                    with conn.transaction():
                        if not durable:
                            conn.execute("SET LOCAL synchronous_commit = off")
                        yield _Conn(conn)
                        if notify:
                            conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
                finally:
                    self._in_tx = False
                if self._unreplicated and durable:
                    raise Unreplicated(self._unreplicated)

    def schema(self, statements: Sequence[str], *, rowid_tables: Sequence[str] = ()) -> None:
        """SQLite DDL, as PostgreSQL's (``postgres_ddl``), under a lock: two processes
        starting at once would otherwise race on ``CREATE ... IF NOT EXISTS``."""
        with self.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in statements:
                rowid = any(
                    re.match(rf"\s*CREATE TABLE IF NOT EXISTS {t}\b", statement)
                    for t in rowid_tables
                )
                conn.execute(postgres_ddl(statement, rowid=rowid))

    def schema_native(self, statements: Sequence[str]) -> None:
        """PostgreSQL DDL as written, under the schema lock."""
        with self.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in statements:
                conn.execute(statement)

    def migrate(self, name: str, statements: Sequence[str]) -> bool:
        with self.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
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
                f"INSERT INTO {MIGRATIONS} (name, applied_at) VALUES (?, ?)", (name, utc_now_iso())
            )
        log.info("store %s: migration %s applied", self.location, name)
        return True

    def has_table(self, name: str) -> bool:
        row = self.read_one("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(row[0])

    def columns(self, table: str) -> set[str]:
        rows = self.read(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {r[0] for r in rows}

    def events_write_lock(self, conn: Any) -> None:
        """Inside ``tx()``, before inserting into ``events``: writers take turns, so the
        ``rowid`` each row gets is in commit order and a reader following ``rowid > position``
        never passes a row that commits later (the lock ends after the commit is visible)."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (EVENTS_LOCK,))

    def write_in_order(self, conn: Any, table: str) -> None:
        if table == "events":
            self.events_write_lock(conn)
            return
        key = EVENTS_LOCK + 1 + (zlib.crc32(table.encode()) % 1000)
        conn.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def data_version(self) -> int:
        """Changes whenever another connection committed a ``tx()`` (its NOTIFY), or when
        the listening connection had to be opened again (something may have been missed)."""
        with self._lock:
            try:
                listen = self._listener()
                for notice in listen.notifies(timeout=0):
                    if notice.pid not in self._own_pids:
                        self._version += 1
            except psycopg.Error as exc:
                log.debug("store %s: listening again after %s", self.location, exc)
                self._drop_listener()
                self._version += 1
            return self._version

    def _listener(self) -> psycopg.Connection[Any]:
        listen = self._listen
        if listen is not None and not listen.closed and not listen.broken:
            return listen
        self._drop_listener()
        listen = psycopg.connect(self._url, autocommit=True)
        listen.execute(f"LISTEN {CHANNEL}")
        self._listen = listen
        return listen

    def _drop_listener(self) -> None:
        if self._listen is not None:
            with suppress(psycopg.Error):
                self._listen.close()
        self._listen = None

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._drop_listener()


__all__ = ["CHANNEL", "PgRow", "PostgresDb", "Unreplicated", "translate", "with_defaults"]

"""The commune's durable event store: one SQLite file, one row per event id.

A row is committed (WAL, ``synchronous=FULL``) before the receiver sends the hub its receipt, so
an event the hub may delete is already on the commune's disk. Inserting an id that is already
stored does nothing: that is how re-sent events are recognised.

Small tables sit beside ``events`` in the same file:
- ``quarantine``: messages kept apart for an operator (raw payload, topic, reason), one row per
  distinct message: events that passed validation but that SQLite refused for a reason retrying
  cannot fix, and events that did not verify against their hub's enrolled key (reason
  "unverified: ...").
- ``hub_keys``: the enrolled hubs' public keys (``commune.trust`` says how they are used), one
  row per key ever enrolled: hub, key text, fingerprint, enrolled_at, revoked_at (NULL while
  acceptable).
- ``meta``: the alert feed's position, the ``events`` rowid of the last row handed to the feed.
  Rows are never deleted, so rowids only grow and "rows after the position" are exactly the
  rows not yet printed.

An ``EventStore`` holds one SQLite connection and must be used by a single thread (the
receiver's writer thread). Other threads or processes open their own ``EventStore`` to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import sqlite_utils

from core.events import Event

log = logging.getLogger(__name__)

TABLE = "events"
QUARANTINE = "quarantine"
META = "meta"
FEED_POSITION = "feed_position"


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as the commune stores it: the parsed fields plus the raw JSON text."""

    id: str
    hub: str
    commune: str
    seq: int
    kind: str
    priority: int
    zone: str
    source: str
    ts: str
    clock_synced: bool
    cid: int
    qualifier: str
    data: dict[str, Any]
    received_at: str  # UTC ISO-8601 when the receiver got the message
    payload: str  # the message exactly as published
    sig: str | None = None  # the hub's signature, when it verified
    verified: bool | None = None  # True: verified; None: no hub enrolled, nothing verified

    @classmethod
    def from_event(
        cls, event: Event, *, hub: str, commune: str, payload: str, received_at: str
    ) -> ReceivedEvent:
        return cls(
            id=event.id,
            hub=hub,
            commune=commune,
            seq=event.seq,
            kind=event.kind,
            priority=int(event.priority),
            zone=event.zone,
            source=event.source,
            ts=event.ts,
            clock_synced=event.clock_synced,
            cid=event.cid,
            qualifier=event.qualifier,
            data=event.data,
            received_at=received_at,
            payload=payload,
        )


COLUMNS = [f.name for f in fields(ReceivedEvent)]
# Added after the first files were written: nullable, and added to older files on open.
LATER_COLUMNS = {"sig": "TEXT", "verified": "INTEGER"}
HUB_KEYS = "hub_keys"


@dataclass(frozen=True)
class HubKeyRecord:
    """One enrolled key of a hub (``revoked_at`` None while it is acceptable)."""

    hub: str
    key: str
    fingerprint: str
    enrolled_at: str
    revoked_at: str | None


INSERT_SQL = (
    # One event row (``event_row`` gives its values); a stored id is left as it was.
    f"INSERT OR IGNORE INTO {TABLE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def event_row(item: ReceivedEvent) -> list[Any]:
    """The values of ``INSERT_SQL`` for one event."""
    row = asdict(item)
    row["clock_synced"] = int(item.clock_synced)
    row["verified"] = None if item.verified is None else int(item.verified)
    row["data"] = json.dumps(item.data, separators=(",", ":"), sort_keys=True)
    return [row[c] for c in COLUMNS]


class EventStore:
    """``events`` table keyed by event id; ``store_batch`` commits a batch in one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Autocommit mode: transactions are explicit (BEGIN ... COMMIT) in store_batch.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        # Short: the writer retries a locked file with backoff, and a long wait inside SQLite
        # would keep it deaf to stop().
        self._conn.execute("PRAGMA busy_timeout=2000")
        db = sqlite_utils.Database(self._conn)
        db.table(TABLE).create(
            {
                "id": str,
                "hub": str,
                "commune": str,
                "seq": int,
                "kind": str,
                "priority": int,
                "zone": str,
                "source": str,
                "ts": str,
                "clock_synced": int,
                "cid": int,
                "qualifier": str,
                "data": str,
                "received_at": str,
                "payload": str,
            },
            pk="id",
            not_null=[c for c in COLUMNS if c not in LATER_COLUMNS],
            if_not_exists=True,
        )
        present = {r[1] for r in self._conn.execute(f"PRAGMA table_info({TABLE})")}
        for column, sql_type in LATER_COLUMNS.items():
            if column not in present:
                self._add_column(column, sql_type)
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_hub_seq ON {TABLE} (hub, seq)")
        self._conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {QUARANTINE} (
                digest TEXT PRIMARY KEY NOT NULL,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                reason TEXT NOT NULL,
                received_at TEXT NOT NULL,
                last_received_at TEXT NOT NULL,
                times INTEGER NOT NULL
            )"""
        )
        self._conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {HUB_KEYS} (
                hub TEXT NOT NULL,
                key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                enrolled_at TEXT NOT NULL,
                revoked_at TEXT
            )"""
        )
        if not self._has_table(META):
            self._create_meta()

    def _add_column(self, column: str, sql_type: str) -> None:
        """Migrate a file from before ``column``; another process may be doing it too."""
        try:
            self._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {sql_type}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return bool(row[0])

    def _create_meta(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_table(META):  # another process may have made it meanwhile
                self._conn.execute(
                    f"CREATE TABLE {META} (key TEXT PRIMARY KEY NOT NULL, value INTEGER)"
                )
                # A file from before the feed kept a position: its rows were printed when they
                # were stored, so the feed starts after them rather than printing the history.
                self._conn.execute(
                    f"INSERT INTO {META} (key, value) "
                    f"SELECT ?, coalesce(max(rowid), 0) FROM {TABLE}",
                    (FEED_POSITION,),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def store_batch(self, items: Sequence[ReceivedEvent]) -> list[bool]:
        """Insert every item not yet stored, commit once; True where the item was new.

        An id repeated inside the batch counts as new only the first time. On any error nothing
        of the batch is stored and the error is raised as SQLite (or the driver) gave it.
        """
        if not items:
            return []
        new: list[bool] = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                cur = self._conn.execute(INSERT_SQL, self._row_values(item))
                new.append(cur.rowcount == 1)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return new

    def _row_values(self, item: ReceivedEvent) -> list[Any]:
        return event_row(item)

    def _rollback(self) -> None:
        """Roll back if a transaction is open. SQLite may already have rolled back by itself
        (a full disk, an I/O error); a failing ROLLBACK must not hide the error that matters."""
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback of %s failed: %s", self.path, exc)

    def quarantine(self, topic: str, payload: bytes, reason: str, received_at: str) -> bool:
        """Keep a message apart; True if it is new here. The same message again (a hub re-sends
        what it has no receipt for) only bumps ``times`` and ``last_received_at``."""
        digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
        row = self._conn.execute(
            f"INSERT INTO {QUARANTINE} "
            "(digest, topic, payload, reason, received_at, last_received_at, times) "
            "VALUES (?, ?, ?, ?, ?, ?, 1) "
            "ON CONFLICT(digest) DO UPDATE SET "
            "times = times + 1, last_received_at = excluded.last_received_at, "
            "reason = excluded.reason RETURNING times",
            (digest, topic, payload, reason, received_at, received_at),
        ).fetchone()
        return row is not None and int(row[0]) == 1

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined message, first received first."""
        rows = self._conn.execute(
            f"SELECT topic, payload, reason, received_at, last_received_at, times "
            f"FROM {QUARANTINE} ORDER BY received_at, rowid"
        )
        return [dict(r) for r in rows]

    # -- enrolled hubs' keys -----------------------------------------------------------------

    def hub_keys(self) -> list[HubKeyRecord]:
        """Every key ever enrolled, oldest enrolment first."""
        rows = self._conn.execute(
            f"SELECT hub, key, fingerprint, enrolled_at, revoked_at FROM {HUB_KEYS} ORDER BY rowid"
        )
        return [HubKeyRecord(**dict(r)) for r in rows]

    def enrol_hub_key(self, hub: str, key: str, fingerprint: str, now: str) -> bool:
        """Add ``key`` as the hub's newest (active) key; False if it already is the active one."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            newest = self._conn.execute(
                f"SELECT fingerprint FROM {HUB_KEYS} WHERE hub = ? AND revoked_at IS NULL "
                "ORDER BY rowid DESC LIMIT 1",
                (hub,),
            ).fetchone()
            added = newest is None or newest[0] != fingerprint
            if added:
                self._conn.execute(
                    f"INSERT INTO {HUB_KEYS} (hub, key, fingerprint, enrolled_at) "
                    "VALUES (?, ?, ?, ?)",
                    (hub, key, fingerprint, now),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return added

    def revoke_hub_keys(self, hub: str, now: str, fingerprint: str | None = None) -> int:
        """Revoke every acceptable key of ``hub`` (or only the one with ``fingerprint``);
        the number of keys revoked."""
        sql = f"UPDATE {HUB_KEYS} SET revoked_at = ? WHERE hub = ? AND revoked_at IS NULL"
        params: tuple[str, ...] = (now, hub)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            params += (fingerprint,)
        return self._conn.execute(sql, params).rowcount

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file (a ``tuquan keys`` run)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # -- the alert feed's position -----------------------------------------------------------

    def feed_position(self) -> int:
        """The rowid of the last row handed to the alert feed (0: none yet)."""
        row = self._conn.execute(
            f"SELECT value FROM {META} WHERE key = ?", (FEED_POSITION,)
        ).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def set_feed_position(self, position: int) -> None:
        """Record that every row up to ``position`` was handed to the feed.

        Written without fsync: losing it to a power cut only prints some lines again, while
        an fsync per batch would halve what the receiver can commit. Every event row it
        covers was committed with FULL sync before it was printed, so the position can never
        point past a row that is not on disk."""
        self._conn.execute("PRAGMA synchronous=OFF")
        try:
            self._conn.execute(
                f"INSERT INTO {META} (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (FEED_POSITION, position),
            )
        finally:
            self._conn.execute("PRAGMA synchronous=FULL")

    def rows_after(self, position: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` stored rows with a rowid above ``position``, in store order, each
        as (rowid, row dict as ``get`` returns it)."""
        rows = self._conn.execute(
            f"SELECT rowid AS _rowid, * FROM {TABLE} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (position, limit),
        )
        out = []
        for row in rows:
            item = self._to_dict(row)
            out.append((int(item.pop("_rowid")), item))
        return out

    def count(self) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])

    def ids(self) -> list[str]:
        """Every stored id, in id order (UUIDv7 ids sort by creation time)."""
        return [r[0] for r in self._conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")]

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The stored row as a dict (``data`` decoded, ``clock_synced`` a bool), or None."""
        row = self._conn.execute(f"SELECT * FROM {TABLE} WHERE id = ?", (event_id,)).fetchone()
        return self._to_dict(row) if row is not None else None

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` events stored, newest first."""
        rows = self._conn.execute(f"SELECT * FROM {TABLE} ORDER BY rowid DESC LIMIT ?", (n,))
        return [self._to_dict(r) for r in rows]

    @staticmethod
    def _to_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["data"] = json.loads(out["data"])
        out["clock_synced"] = bool(out["clock_synced"])
        if out.get("verified") is not None:
            out["verified"] = bool(out["verified"])
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The commune's durable event store: one row per event id, in a SQLite file or PostgreSQL.

A row is committed (SQLite: WAL, ``synchronous=FULL``; PostgreSQL: as ``synchronous_commit``
says, on the standby too when one is synchronous) before the receiver sends the hub its
receipt, so an event the hub may delete is already on the commune's disk. Inserting an id that
is already stored does nothing (``ON CONFLICT DO NOTHING``): that is how re-sent events are
recognised, and how any number of receivers write one record.

Small tables sit beside ``events`` in the same store:
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

An ``EventStore`` holds one connection (``commune.db``) and is used by a single thread (the
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

from commune.db import SQLITE, Db, Row, open_db
from core.events import Event

log = logging.getLogger(__name__)

TABLE = "events"
QUARANTINE = "quarantine"
META = "meta"
FEED_POSITION = "feed_position"
BARRIER = "receipt_barrier"  # see EventStore.store_batch


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
    # One event row (``event_row`` gives its values); a stored id is left as it was, and
    # returns no row.
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (id) DO NOTHING RETURNING id"
)

SIDE_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {QUARANTINE} (
        digest TEXT PRIMARY KEY NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        received_at TEXT NOT NULL,
        last_received_at TEXT NOT NULL,
        times INTEGER NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {HUB_KEYS} (
        hub TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        enrolled_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
)

# The same table on PostgreSQL, with the order rows were stored in as a column (SQLite's rowid).
POSTGRES_EVENTS = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id TEXT PRIMARY KEY NOT NULL,
        hub TEXT NOT NULL,
        commune TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        priority BIGINT NOT NULL,
        zone TEXT NOT NULL,
        source TEXT NOT NULL,
        ts TEXT NOT NULL,
        clock_synced BIGINT NOT NULL,
        cid BIGINT NOT NULL,
        qualifier TEXT NOT NULL,
        data TEXT NOT NULL,
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        sig TEXT,
        verified BIGINT
    )""",
    f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_hub_seq ON {TABLE} (hub, seq)",
)


def _text(value: str) -> str:
    """Text PostgreSQL accepts (it refuses NUL), unchanged for any other."""
    return value.replace("\0", "\\0") if "\0" in value else value


def event_row(item: ReceivedEvent) -> list[Any]:
    """The values of ``INSERT_SQL`` for one event."""
    row = asdict(item)
    row["clock_synced"] = int(item.clock_synced)
    row["verified"] = None if item.verified is None else int(item.verified)
    row["data"] = json.dumps(item.data, separators=(",", ":"), sort_keys=True)
    return [row[c] for c in COLUMNS]


class EventStore:
    """``events`` table keyed by event id; ``store_batch`` commits a batch in one transaction.

    ``location`` is a SQLite file path or a PostgreSQL URL (``commune.db.open_db``)."""

    def __init__(self, location: str | Path) -> None:
        self.db = open_db(location)
        self.location = self.db.location
        self.path = Path(location) if self.db.dialect == SQLITE else None
        try:
            if self.db.dialect == SQLITE:
                self._create_sqlite()
            else:
                self._create_postgres()
        except BaseException:
            self.db.close()
            raise

    def _create_sqlite(self) -> None:
        assert isinstance(self.db, Db)
        db = sqlite_utils.Database(self.db._conn)  # noqa: SLF001 (the same module's connection)
        with self.db.tx():
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
        present = self.db.columns(TABLE)
        for column, sql_type in LATER_COLUMNS.items():
            if column not in present:
                self._add_column(column, sql_type)
        self.db.schema(
            (f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_hub_seq ON {TABLE} (hub, seq)", *SIDE_TABLES)
        )
        if not self.db.has_table(META):
            self._create_meta()

    def _create_postgres(self) -> None:
        from commune.pg import PostgresDb

        assert isinstance(self.db, PostgresDb)
        self.db.schema_native(POSTGRES_EVENTS)
        self.db.schema(SIDE_TABLES, rowid_tables=(QUARANTINE, HUB_KEYS))
        if not self.db.has_table(META):
            self._create_meta()

    def _add_column(self, column: str, sql_type: str) -> None:
        """Migrate a file from before ``column``; another process may be doing it too."""
        try:
            with self.db.tx() as conn:
                conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {sql_type}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise

    def _create_meta(self) -> None:
        with self.db.tx() as conn:
            if self.db.dialect != SQLITE:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (7_305_001,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY NOT NULL, "
                f"value {'INTEGER' if self.db.dialect == SQLITE else 'BIGINT'})"
            )
            # A file from before the feed kept a position: its rows were printed when they
            # were stored, so the feed starts after them rather than printing the history.
            conn.execute(
                f"INSERT INTO {META} (key, value) "
                f"SELECT ?, coalesce(max(rowid), 0) FROM {TABLE} WHERE true ON CONFLICT DO NOTHING",
                (FEED_POSITION,),
            )

    def store_batch(self, items: Sequence[ReceivedEvent]) -> list[bool]:
        """Insert every item not yet stored, commit once; True where the item was new.

        An id repeated inside the batch counts as new only the first time. On any error nothing
        of the batch is stored and the error is raised as the database (or the driver) gave it.

        When every item was stored before, the transaction still writes (a counter in
        ``meta``): on PostgreSQL that makes its COMMIT wait for the synchronous standby to
        reach this point of the log, so a duplicate whose first commit was never confirmed
        (a cancelled wait) is on the standby before it is receipted.
        """
        if not items:
            return []
        new: list[bool] = []
        with self.db.tx(notify=False) as conn:
            self.db.events_write_lock(conn)
            for item in items:
                row = conn.execute(INSERT_SQL, self._row_values(item)).fetchone()
                new.append(row is not None)
            if not any(new):
                conn.execute(
                    f"INSERT INTO {META} (key, value) VALUES (?, 1) "
                    "ON CONFLICT(key) DO UPDATE SET value = meta.value + 1",
                    (BARRIER,),
                )
        return new

    def _row_values(self, item: ReceivedEvent) -> list[Any]:
        return event_row(item)

    def quarantine(self, topic: str, payload: bytes, reason: str, received_at: str) -> bool:
        """Keep a message apart; True if it is new here. The same message again (a hub re-sends
        what it has no receipt for) only bumps ``times`` and ``last_received_at``."""
        digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
        with self.db.tx() as conn:
            row = conn.execute(
                f"INSERT INTO {QUARANTINE} "
                "(digest, topic, payload, reason, received_at, last_received_at, times) "
                "VALUES (?, ?, ?, ?, ?, ?, 1) "
                "ON CONFLICT(digest) DO UPDATE SET "
                f"times = {QUARANTINE}.times + 1, last_received_at = excluded.last_received_at, "
                "reason = excluded.reason RETURNING times",
                (digest, _text(topic), payload, _text(reason), received_at, received_at),
            ).fetchone()
        return row is not None and int(row[0]) == 1

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined message, first received first."""
        rows = self.db.read(
            f"SELECT topic, payload, reason, received_at, last_received_at, times "
            f"FROM {QUARANTINE} ORDER BY received_at, rowid"
        )
        return [{**dict(r), "payload": bytes(r["payload"])} for r in rows]

    # -- enrolled hubs' keys -----------------------------------------------------------------

    def hub_keys(self) -> list[HubKeyRecord]:
        """Every key ever enrolled, oldest enrolment first."""
        rows = self.db.read(
            f"SELECT hub, key, fingerprint, enrolled_at, revoked_at FROM {HUB_KEYS} ORDER BY rowid"
        )
        return [HubKeyRecord(**dict(r)) for r in rows]

    def enrol_hub_key(self, hub: str, key: str, fingerprint: str, now: str) -> bool:
        """Add ``key`` as the hub's newest (active) key; False if it already is the active one."""
        with self.db.tx() as conn:
            newest = conn.execute(
                f"SELECT fingerprint FROM {HUB_KEYS} WHERE hub = ? AND revoked_at IS NULL "
                "ORDER BY rowid DESC LIMIT 1",
                (hub,),
            ).fetchone()
            added = newest is None or newest[0] != fingerprint
            if added:
                conn.execute(
                    f"INSERT INTO {HUB_KEYS} (hub, key, fingerprint, enrolled_at) "
                    "VALUES (?, ?, ?, ?)",
                    (hub, key, fingerprint, now),
                )
        return added

    def revoke_hub_keys(self, hub: str, now: str, fingerprint: str | None = None) -> int:
        """Revoke every acceptable key of ``hub`` (or only the one with ``fingerprint``);
        the number of keys revoked."""
        sql = f"UPDATE {HUB_KEYS} SET revoked_at = ? WHERE hub = ? AND revoked_at IS NULL"
        params: tuple[str, ...] = (now, hub)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            params += (fingerprint,)
        with self.db.tx() as conn:
            return int(conn.execute(sql, params).rowcount)

    def data_version(self) -> int:
        """Changes whenever another connection commits to the store (a ``tuquan keys`` run)."""
        return self.db.data_version()

    # -- the alert feed's position -----------------------------------------------------------

    def feed_position(self) -> int:
        """The rowid of the last row handed to the alert feed (0: none yet)."""
        row = self.db.read_one(f"SELECT value FROM {META} WHERE key = ?", (FEED_POSITION,))
        return int(row[0]) if row is not None and row[0] is not None else 0

    def set_feed_position(self, position: int) -> None:
        """Record that every row up to ``position`` was handed to the feed.

        Written without waiting for the disk: losing it to a power cut only prints some lines
        again, while an fsync per batch would halve what the receiver can commit. Every event
        row it covers was committed durably before it was printed, so the position can never
        point past a row that is not on disk."""
        with self.db.tx(durable=False, notify=False) as conn:
            conn.execute(
                f"INSERT INTO {META} (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (FEED_POSITION, position),
            )

    def rows_after(self, position: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` stored rows with a rowid above ``position``, in store order, each
        as (rowid, row dict as ``get`` returns it)."""
        rows = self.db.read(
            f"SELECT rowid AS _rowid, {', '.join(COLUMNS)} FROM {TABLE} "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (position, limit),
        )
        out = []
        for row in rows:
            item = self._to_dict(row)
            out.append((int(item.pop("_rowid")), item))
        return out

    def count(self) -> int:
        return int(self.db.read_one(f"SELECT count(*) FROM {TABLE}")[0])

    def ids(self) -> list[str]:
        """Every stored id, in id order (UUIDv7 ids sort by creation time)."""
        return [r[0] for r in self.db.read(f"SELECT id FROM {TABLE} ORDER BY id")]

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The stored row as a dict (``data`` decoded, ``clock_synced`` a bool), or None."""
        row = self.db.read_one(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE id = ?", (event_id,)
        )
        return self._to_dict(row) if row is not None else None

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` events stored, newest first."""
        rows = self.db.read(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY rowid DESC LIMIT ?", (n,)
        )
        return [self._to_dict(r) for r in rows]

    @staticmethod
    def _to_dict(row: Row) -> dict[str, Any]:
        out = dict(row)
        out["data"] = json.loads(out["data"])
        out["clock_synced"] = bool(out["clock_synced"])
        if out.get("verified") is not None:
            out["verified"] = bool(out["verified"])
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The commune's durable event store: one SQLite file, one row per event id.

A row is committed (WAL, ``synchronous=FULL``) before the receiver sends the hub its receipt, so
an event the hub may delete is already on the commune's disk. Inserting an id that is already
stored does nothing: that is how re-sent events are recognised.

An ``EventStore`` holds one SQLite connection and must be used by a single thread (the
receiver's writer thread). Other threads or processes open their own ``EventStore`` to read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.events import Event

TABLE = "events"


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
_INSERT = (
    f"INSERT OR IGNORE INTO {TABLE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


class EventStore:
    """``events`` table keyed by event id; ``store_batch`` commits a batch in one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Autocommit mode: transactions are explicit (BEGIN ... COMMIT) in store_batch.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
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
            not_null=COLUMNS,
            if_not_exists=True,
        )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_hub_seq ON {TABLE} (hub, seq)")

    def store_batch(self, items: Sequence[ReceivedEvent]) -> list[bool]:
        """Insert every item not yet stored, commit once; True where the item was new.

        An id repeated inside the batch counts as new only the first time.
        """
        if not items:
            return []
        new: list[bool] = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                cur = self._conn.execute(_INSERT, self._row_values(item))
                new.append(cur.rowcount == 1)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return new

    @staticmethod
    def _row_values(item: ReceivedEvent) -> list[Any]:
        row = asdict(item)
        row["clock_synced"] = int(item.clock_synced)
        row["data"] = json.dumps(item.data, separators=(",", ":"), sort_keys=True)
        return [row[c] for c in COLUMNS]

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
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

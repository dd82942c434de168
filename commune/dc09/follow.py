"""The one query that reads the receiver's ``events`` table in the order it was stored.

SQLite gives every row a ``rowid`` that only grows (rows are never deleted, and writers are
serialised by ``BEGIN IMMEDIATE``); the PostgreSQL store gives ``events`` an explicit
increasing ``rowid`` column, so the same text serves both. A store whose order column is
named otherwise gives its own ``FollowSql``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

COLUMNS = "id, hub, kind, zone, source, cid, qualifier, priority, ts"


@dataclass(frozen=True)
class FollowSql:
    """The statements ``Dc09Queue.follow`` runs: rows after a position, and the last one."""

    after: str = (
        f"SELECT rowid AS position, {COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )
    end: str = "SELECT coalesce(max(rowid), 0) FROM events"


SQLITE = FollowSql()


def events_after(
    conn: sqlite3.Connection, position: int, limit: int, sql: FollowSql = SQLITE
) -> list[Any]:
    """Up to ``limit`` events stored after ``position``, each with its own ``position``."""
    return conn.execute(sql.after, (position, limit)).fetchall()


def end_of_events(conn: sqlite3.Connection, sql: FollowSql = SQLITE) -> int:
    """The position of the last event stored (0: none)."""
    return int(conn.execute(sql.end).fetchone()[0])

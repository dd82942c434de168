"""The audit trail: one append-only row per action on an alert, a hub or an account.

Who acknowledged, closed, silenced, what the escalation sent and each attempt to send it, who
logged in and who failed to. SQLite triggers refuse any UPDATE or DELETE of the table, so a
record once written stays as it was (short of editing the file by hand).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from commune.db import Db
from core.events import utc_now_iso

TABLE = "audit"
SYSTEM = "system"  # the actor of what the receiver did by itself (auto-close, escalation)

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        alert_id INTEGER,
        hub TEXT,
        detail TEXT NOT NULL DEFAULT '{{}}'
    )""",
    f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_alert ON {TABLE} (alert_id, id)",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: str
    actor: str
    action: str
    alert_id: int | None
    hub: str | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "alert_id": self.alert_id,
            "hub": self.hub,
            "detail": self.detail,
        }


class AuditLog:
    """Appends to and reads the ``audit`` table of a ``Db``."""

    def __init__(self, db: Db) -> None:
        self.db = db
        db.schema(SCHEMA)

    def append(
        self,
        actor: str,
        action: str,
        *,
        alert_id: int | None = None,
        hub: str | None = None,
        detail: dict[str, Any] | None = None,
        at: str | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> int:
        """Add one record; inside ``conn``'s transaction when given (so the record and the
        change it describes commit together), else in a transaction of its own."""
        values = (
            at or utc_now_iso(),
            actor,
            action,
            alert_id,
            hub,
            json.dumps(detail or {}, separators=(",", ":"), sort_keys=True, ensure_ascii=False),
        )
        sql = (
            f"INSERT INTO {TABLE} (at, actor, action, alert_id, hub, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        if conn is not None:
            return int(conn.execute(sql, values).lastrowid or 0)
        with self.db.tx() as own:
            return int(own.execute(sql, values).lastrowid or 0)

    def last_id(self) -> int:
        """The newest record's id (0 for none): it changes with every action recorded."""
        row = self.db.read_one(f"SELECT max(id) FROM {TABLE}")
        return int(row[0]) if row is not None and row[0] is not None else 0

    def any_after(self, after: int, actions: tuple[str, ...], *, upto: int) -> bool:
        """Whether a record with id in (after, upto] is one of ``actions``."""
        marks = ", ".join("?" for _ in actions)
        row = self.db.read_one(
            f"SELECT 1 FROM {TABLE} WHERE id > ? AND id <= ? AND action IN ({marks}) LIMIT 1",
            (after, upto, *actions),
        )
        return row is not None

    def for_alert(self, alert_id: int) -> list[AuditRecord]:
        """The alert's records, oldest first."""
        if not 0 < alert_id < 2**63:
            return []
        rows = self.db.read(f"SELECT * FROM {TABLE} WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [_record(r) for r in rows]

    def recent(self, limit: int = 100, action: str | None = None) -> list[AuditRecord]:
        """The newest records first (of one ``action`` when given)."""
        if action is None:
            rows = self.db.read(f"SELECT * FROM {TABLE} ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.read(
                f"SELECT * FROM {TABLE} WHERE action = ? ORDER BY id DESC LIMIT ?",
                (action, limit),
            )
        return [_record(r) for r in rows]


def _record(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        id=int(row["id"]),
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        alert_id=row["alert_id"],
        hub=row["hub"],
        detail=json.loads(row["detail"]),
    )

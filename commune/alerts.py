"""Alerts: what an operator must see and act on, opened from the stored events.

An alarm (panic, fire...), a trouble (tamper, a hub gone dark...) or a detection (a camera's
person incident) opens an *alert*; telemetry and test reports never do. Lifecycle:

    new ──acknowledge──▶ acknowledged ──close(outcome, note)──▶ closed
     └──────────────────close────────────────────────────────────▲

- Which events open, join or close an alert: ``commune.incidents`` (one incident per hub and
  window; a trouble closed by its restore). Alarms stay open until an operator closes them.
- Every change is written with its audit record (``commune.audit``) in one transaction.

The ``AlertBook`` follows the ``events`` table by rowid, like the alert feed: its position is
kept in ``desk_meta`` and moved in the same transaction as the alerts it opened, so a crash
neither loses an alert nor opens one twice.

The queue order is priority (alarms, then troubles, then detections), then unacknowledged before
acknowledged, then newest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from commune.audit import AuditLog
from commune.db import Connection, Db, Row
from commune.incidents import (
    ACKNOWLEDGED,
    CLOSED,
    NEW,
    RESTORED,
    AlertChange,
    take_event,
)
from core.errors import TuquanError
from core.events import utc_now_iso

STATES = (NEW, ACKNOWLEDGED, CLOSED)
OUTCOMES = ("real", "false_alarm", "test", "other")
POSITION_KEY = "alerts_position"
MAX_NOTE_CHARS = 2000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hub TEXT NOT NULL,
        kind TEXT NOT NULL,
        zone TEXT NOT NULL,
        cid INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        origin TEXT NOT NULL,
        state TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        first_event_id TEXT NOT NULL,
        last_event_at TEXT NOT NULL,
        events INTEGER NOT NULL,
        trouble_key TEXT,
        ack_by TEXT,
        ack_at TEXT,
        closed_by TEXT,
        closed_at TEXT,
        outcome TEXT,
        note TEXT
    )""",
    # The queue reads only open alerts: a partial index stays small however long the history.
    "CREATE INDEX IF NOT EXISTS idx_alerts_open ON alerts (priority, opened_at) "
    "WHERE state != 'closed'",
    # The alarms still new (counted for every page and every live notice), the tallies by
    # state, the open alerts by hub (the hubs board) and the ones escalation waits on (each
    # second): searches instead of scans of a year's alerts (8.7 ms -> 0.01 ms for the count
    # with 47,000 alerts; bench.console_pages).
    "CREATE INDEX IF NOT EXISTS idx_alerts_state ON alerts (state, priority)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_hub ON alerts (hub, state, last_event_at)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_trouble ON alerts (trouble_key, state)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_opened ON alerts (opened_at)",
    """CREATE TABLE IF NOT EXISTS alert_events (
        alert_id INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (alert_id, event_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS idx_alert_events_event ON alert_events (event_id)",
    "CREATE TABLE IF NOT EXISTS desk_meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER)",
)


EventHook = Callable[[Connection, Row], None]


__all__ = [
    "ACKNOWLEDGED",
    "CLOSED",
    "NEW",
    "OUTCOMES",
    "RESTORED",
    "STATES",
    "Alert",
    "AlertBook",
    "AlertChange",
    "AlertError",
    "event_dict",
]


class AlertError(TuquanError):
    """An action that does not apply: no such alert, already closed, a bad outcome."""


@dataclass(frozen=True)
class Alert:
    id: int
    hub: str
    kind: str
    zone: str
    cid: int
    priority: int
    origin: str  # "hub", or "receiver" for the receiver's own supervision troubles
    state: str
    opened_at: str
    first_event_id: str
    last_event_at: str
    events: int
    trouble_key: str | None
    ack_by: str | None
    ack_at: str | None
    closed_by: str | None
    closed_at: str | None
    outcome: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value: no deep copy (``asdict``'s was two thirds of a CSV
        # export's time).
        return dict(vars(self))


class AlertBook:
    """The ``alerts`` and ``alert_events`` tables of a ``Db``, and their audit records."""

    def __init__(self, db: Db, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit if audit is not None else AuditLog(db)
        db.schema(SCHEMA)
        with db.tx() as conn:
            if db.has_table("events"):
                # A hub's recent events (the alert page, the hubs board), newest first.
                conn.execute(
                    "CREATE INDEX IF NOT EXISTS idx_events_hub_received "
                    "ON events (hub, received_at)"
                )

    # -- following the stored events -------------------------------------------------------

    def position(self) -> int:
        row = self.db.read_one("SELECT value FROM desk_meta WHERE key = ?", (POSITION_KEY,))
        return int(row[0]) if row is not None and row[0] is not None else 0

    def follow(
        self,
        batch: int = 1000,
        on_event: EventHook | None = None,
        *,
        max_batches: int | None = None,
    ) -> list[AlertChange]:
        """Open or join alerts for the events stored since the position, ``batch`` events per
        transaction, until none is left (or after ``max_batches``); ``on_event(conn, row)`` is
        called for each event inside its transaction (``commune.hubs.sign_of_life``). Returns
        what changed (empty when there was nothing new)."""
        changes: list[AlertChange] = []
        done = 0
        while max_batches is None or done < max_batches:
            done += 1
            if self._follow_batch(batch, on_event, changes) < batch:
                break
        return changes

    def _follow_batch(
        self, limit: int, on_event: EventHook | None, changes: list[AlertChange]
    ) -> int:
        with self.db.tx() as conn:
            if not self.db.has_table("events"):
                return 0
            row = conn.execute("SELECT value FROM desk_meta WHERE key = ?", (POSITION_KEY,))
            found = row.fetchone()
            position = int(found[0]) if found is not None else 0
            rows = conn.execute(
                "SELECT rowid AS _rowid, id, hub, kind, priority, zone, cid, qualifier, source, "
                "received_at FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (position, limit),
            ).fetchall()
            if not rows:
                return 0
            for event in rows:
                if on_event is not None:
                    on_event(conn, event)
                change = take_event(conn, event, self.audit)
                if change is not None:
                    changes.append(change)
            conn.execute(
                "INSERT INTO desk_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (POSITION_KEY, int(rows[-1]["_rowid"])),
            )
            return len(rows)

    # -- operators' actions ----------------------------------------------------------------

    def acknowledge(self, alert_id: int, user: str) -> Alert:
        """Mark the alert acknowledged by ``user`` (an already acknowledged one is left as it
        was, and the repeat is not audited); a closed one raises AlertError."""
        with self.db.tx() as conn:
            alert = self._get(conn, alert_id)
            if alert.state == CLOSED:
                raise AlertError(f"alert {alert_id} is closed")
            if alert.state == NEW:
                now = utc_now_iso()
                conn.execute(
                    "UPDATE alerts SET state = ?, ack_by = ?, ack_at = ? WHERE id = ?",
                    (ACKNOWLEDGED, user, now, alert_id),
                )
                self.audit.append(
                    user, "acknowledged", alert_id=alert_id, hub=alert.hub, at=now, conn=conn
                )
            return self._get(conn, alert_id)

    def close(self, alert_id: int, user: str, outcome: str, note: str = "") -> Alert:
        """Close the alert with its outcome (one of ``OUTCOMES``) and a note; closing also
        acknowledges a new alert. A closed alert raises AlertError."""
        if outcome not in OUTCOMES:
            raise AlertError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if len(note) > MAX_NOTE_CHARS:
            raise AlertError(f"the note is longer than {MAX_NOTE_CHARS} characters")
        with self.db.tx() as conn:
            alert = self._get(conn, alert_id)
            if alert.state == CLOSED:
                raise AlertError(f"alert {alert_id} is already closed")
            now = utc_now_iso()
            conn.execute(
                "UPDATE alerts SET state = ?, closed_by = ?, closed_at = ?, outcome = ?, "
                "note = ?, ack_by = coalesce(ack_by, ?), ack_at = coalesce(ack_at, ?) "
                "WHERE id = ?",
                (CLOSED, user, now, outcome, note, user, now, alert_id),
            )
            self.audit.append(
                user,
                "closed",
                alert_id=alert_id,
                hub=alert.hub,
                detail={"outcome": outcome, "note": note},
                at=now,
                conn=conn,
            )
            return self._get(conn, alert_id)

    # -- reading ---------------------------------------------------------------------------

    def get(self, alert_id: int) -> Alert | None:
        if not _valid_id(alert_id):
            return None
        row = self.db.read_one("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return _alert(row) if row is not None else None

    def _get(self, conn: Connection, alert_id: int) -> Alert:
        if not _valid_id(alert_id):
            raise AlertError(f"no alert {str(alert_id)[:40]}")
        row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertError(f"no alert {alert_id}")
        return _alert(row)

    def open_alerts(self, limit: int = 500, hub: str | None = None) -> list[Alert]:
        """Alerts not closed, in queue order (see the module's docstring)."""
        where, params = "state != 'closed'", list[Any]()
        if hub is not None:
            where += " AND hub = ?"
            params.append(hub)
        rows = self.db.read(
            f"SELECT * FROM alerts WHERE {where} ORDER BY priority, "
            f"CASE state WHEN '{NEW}' THEN 0 ELSE 1 END, opened_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_alert(r) for r in rows]

    def unacknowledged(self) -> list[Alert]:
        """Alerts still ``new``, oldest first (what escalation looks at)."""
        rows = self.db.read(
            "SELECT * FROM alerts WHERE state != 'closed' AND state = ? ORDER BY id", (NEW,)
        )
        return [_alert(r) for r in rows]

    def search(
        self,
        *,
        hub: str | None = None,
        kind: str | None = None,
        zone: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcome: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Alerts of any state, newest opened first; ``since``/``until`` bound ``opened_at``
        (ISO-8601 strings, ``until`` exclusive)."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("hub", hub),
            ("kind", kind),
            ("zone", zone),
            ("outcome", outcome),
            ("state", state),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("opened_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("opened_at < ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.read(
            f"SELECT * FROM alerts {where} ORDER BY opened_at DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_alert(r) for r in rows]

    def events_of(self, alert_id: int) -> list[dict[str, Any]]:
        """The alert's events as stored (``data`` decoded), in the order they arrived."""
        if not _valid_id(alert_id):
            return []
        rows = self.db.read(
            "SELECT e.* FROM alert_events a JOIN events e ON e.id = a.event_id "
            "WHERE a.alert_id = ? ORDER BY e.received_at, e.rowid",
            (alert_id,),
        )
        return [event_dict(r) for r in rows]

    def alert_of_event(self, event_id: str) -> int | None:
        row = self.db.read_one(
            "SELECT alert_id FROM alert_events WHERE event_id = ? LIMIT 1", (event_id,)
        )
        return int(row[0]) if row is not None else None

    def counts(self) -> dict[str, int]:
        """Alerts by state."""
        rows = self.db.read("SELECT state, count(*) FROM alerts GROUP BY state")
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out


def _valid_id(alert_id: object) -> bool:
    """An alert id SQLite can hold (an absurd one names no alert rather than raising)."""
    return isinstance(alert_id, int) and not isinstance(alert_id, bool) and 0 < alert_id < 2**63


_NOT_SHOWN = frozenset({"payload", "rowid"})  # the raw message; PostgreSQL's store order


def event_dict(row: Row) -> dict[str, Any]:
    """A stored event row as a dict: ``data`` decoded, flags as booleans, no raw payload."""
    out = {k: row[k] for k in row.keys() if k not in _NOT_SHOWN}  # noqa: SIM118 (a store row)
    try:
        out["data"] = json.loads(out.get("data") or "{}")
    except ValueError:
        out["data"] = {}
    out["clock_synced"] = bool(out.get("clock_synced"))
    if out.get("verified") is not None:
        out["verified"] = bool(out["verified"])
    return out


def _alert(row: Row) -> Alert:
    return Alert(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (a store row)

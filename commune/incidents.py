"""How stored events become alerts: the incident rules (``commune.alerts`` has the lifecycle).

- An event of priority telemetry opens nothing.
- A trouble is keyed by (hub, kind, zone): it happening again while open joins that alert, and
  its restore (qualifier R) closes it (actor "system", outcome "restored").
- An alarm or a detection of a hub within ``INCIDENT_WINDOW_S`` of that hub's newest open
  alarm/detection alert joins it, as one incident (a panic, the camera's person incident and
  its snapshot); the incident takes its most urgent event's kind, zone, Contact ID, priority.
- A siren silenced, and the restore of an alarm or a detection (the person has left, the smoke
  has cleared), join the hub's newest open alarm/detection incident however late, and never
  open one.

Each rule runs inside the caller's transaction, with its audit record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from commune.audit import SYSTEM, AuditLog
from commune.db import Connection, Row
from core.events import RESTORE, Priority, utc_iso, utc_now_iso

INCIDENT_WINDOW_S = 120.0
NEW, ACKNOWLEDGED, CLOSED = "new", "acknowledged", "closed"
RESTORED = "restored"  # the outcome of a trouble its restore closed
NEVER_ALERTS = frozenset({"silenced"})  # a siren silenced is part of an incident, never one
JOIN_EVENT = "INSERT INTO alert_events (alert_id, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING"


@dataclass(frozen=True)
class AlertChange:
    """What following the events did to one alert: "opened", "joined", "restored"."""

    alert_id: int
    action: str
    event_id: str


def trouble_key(hub: str, kind: str, zone: str) -> str:
    return json.dumps([hub, kind, zone], separators=(",", ":"))


def _before(iso: str, seconds: float) -> str:
    return utc_iso((datetime.fromisoformat(iso) - timedelta(seconds=seconds)).timestamp())


def take_event(conn: Connection, event: Row, audit: AuditLog) -> AlertChange | None:
    priority = int(event["priority"])
    kind = event["kind"]
    if priority >= Priority.TELEMETRY:
        return None
    if kind in NEVER_ALERTS:
        return _join_incident(conn, event, audit)
    if event["qualifier"] == RESTORE:
        if priority == Priority.TROUBLE:
            return _restore(conn, event, audit)
        # "The person has left", "the smoke has cleared": part of the incident, never its end
        # (an operator closes an alarm) and never an alert of its own.
        return _join_incident(conn, event, audit)
    if priority == Priority.TROUBLE:
        key = trouble_key(event["hub"], kind, event["zone"])
        found = conn.execute(
            "SELECT id FROM alerts WHERE trouble_key = ? AND state != ? ORDER BY id DESC LIMIT 1",
            (key, CLOSED),
        ).fetchone()
        if found is not None:
            return _join(conn, int(found[0]), event, audit)
        return _open(conn, event, key, audit)
    since = _before(event["received_at"], INCIDENT_WINDOW_S)
    found = conn.execute(
        "SELECT id FROM alerts WHERE hub = ? AND state != ? AND trouble_key IS NULL "
        "AND last_event_at >= ? ORDER BY last_event_at DESC LIMIT 1",
        (event["hub"], CLOSED, since),
    ).fetchone()
    if found is not None:
        return _join(conn, int(found[0]), event, audit)
    return _open(conn, event, None, audit)


def _join_incident(conn: Connection, event: Row, audit: AuditLog) -> AlertChange | None:
    """A siren silenced belongs to the hub's newest open alarm incident, however late."""
    found = conn.execute(
        "SELECT id FROM alerts WHERE hub = ? AND state != ? AND trouble_key IS NULL "
        "ORDER BY last_event_at DESC LIMIT 1",
        (event["hub"], CLOSED),
    ).fetchone()
    return _join(conn, int(found[0]), event, audit) if found is not None else None


def _open(conn: Connection, event: Row, key: str | None, audit: AuditLog) -> AlertChange:
    at = event["received_at"]
    cur = conn.execute(
        "INSERT INTO alerts (hub, kind, zone, cid, priority, origin, state, opened_at, "
        "first_event_id, last_event_at, events, trouble_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
        (
            event["hub"],
            event["kind"],
            event["zone"],
            int(event["cid"]),
            int(event["priority"]),
            "receiver" if event["source"] == "receiver" else "hub",
            NEW,
            at,
            event["id"],
            at,
            key,
        ),
    )
    alert_id = int(cur.fetchone()[0])
    conn.execute(JOIN_EVENT, (alert_id, event["id"]))
    audit.append(
        SYSTEM,
        "opened",
        alert_id=alert_id,
        hub=event["hub"],
        detail={"event": event["id"], "kind": event["kind"], "zone": event["zone"]},
        at=utc_now_iso(),
        conn=conn,
    )
    return AlertChange(alert_id, "opened", event["id"])


def _join(conn: Connection, alert_id: int, event: Row, audit: AuditLog) -> AlertChange:
    cur = conn.execute(JOIN_EVENT, (alert_id, event["id"]))
    if cur.rowcount:
        # The most urgent event names the incident: a person detection joined by a panic
        # becomes a panic alert.
        conn.execute(
            "UPDATE alerts SET events = events + 1, "
            "last_event_at = CASE WHEN ? > last_event_at THEN ? ELSE last_event_at END, "
            "kind = CASE WHEN ? < priority THEN ? ELSE kind END, "
            "zone = CASE WHEN ? < priority THEN ? ELSE zone END, "
            "cid = CASE WHEN ? < priority THEN ? ELSE cid END, "
            "priority = CASE WHEN ? < priority THEN ? ELSE priority END WHERE id = ?",
            (
                event["received_at"],
                event["received_at"],
                *(int(event["priority"]), event["kind"]),
                *(int(event["priority"]), event["zone"]),
                *(int(event["priority"]), int(event["cid"])),
                int(event["priority"]),
                int(event["priority"]),
                alert_id,
            ),
        )
        audit.append(
            SYSTEM,
            "joined",
            alert_id=alert_id,
            hub=event["hub"],
            detail={"event": event["id"], "kind": event["kind"], "zone": event["zone"]},
            conn=conn,
        )
    return AlertChange(alert_id, "joined", event["id"])


def _restore(conn: Connection, event: Row, audit: AuditLog) -> AlertChange | None:
    key = trouble_key(event["hub"], event["kind"], event["zone"])
    found = conn.execute(
        "SELECT id FROM alerts WHERE trouble_key = ? AND state != ? ORDER BY id DESC LIMIT 1",
        (key, CLOSED),
    ).fetchone()
    if found is None:
        return None
    alert_id = int(found[0])
    now = utc_now_iso()
    conn.execute(JOIN_EVENT, (alert_id, event["id"]))
    conn.execute(
        "UPDATE alerts SET state = ?, closed_by = ?, closed_at = ?, outcome = ?, events = events "
        "+ 1, last_event_at = CASE WHEN ? > last_event_at THEN ? ELSE last_event_at END "
        "WHERE id = ?",
        (CLOSED, SYSTEM, now, RESTORED, event["received_at"], event["received_at"], alert_id),
    )
    audit.append(
        SYSTEM,
        "restored",
        alert_id=alert_id,
        hub=event["hub"],
        detail={"event": event["id"]},
        at=now,
        conn=conn,
    )
    return AlertChange(alert_id, "restored", event["id"])

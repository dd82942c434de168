"""What the alert page shows, gathered from the desk: the alert, its events and pictures, the
hub's recent events, the audit trail and the commands with the hub's answers. The API's
alert detail is built from the same pieces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commune.alerts import Alert
from commune.audit import AuditRecord
from commune.desk import Desk
from commune.hubs import CommandRecord, HubRow
from console.queries import hub_events
from console.snapshot_files import snapshot_file, snapshot_ref

MAX_DATA_TEXT = 4000
MAX_SUMMARY = 200


@dataclass(frozen=True)
class Picture:
    event_id: str
    exists: bool


@dataclass(frozen=True)
class AlertPage:
    alert: Alert
    hub: HubRow | None
    events: list[dict[str, Any]]
    pictures: list[Picture]
    snapshot_target: str | None  # the event whose picture the hub can send again
    hub_events: list[dict[str, Any]]
    audit: list[AuditRecord]
    commands: list[CommandRecord]


def gather(desk: Desk, data_dir: Path, alert: Alert) -> AlertPage:
    events = desk.alerts.events_of(alert.id)
    refs: list[str] = []
    for event in events:
        ref = snapshot_ref(event)
        if ref is not None and ref not in refs:
            refs.append(ref)
    return AlertPage(
        alert=alert,
        hub=desk.hubs.get(alert.hub),
        events=events,
        pictures=[Picture(r, snapshot_file(data_dir, alert.hub, r) is not None) for r in refs],
        snapshot_target=refs[-1] if refs else None,
        hub_events=hub_events(desk.db, alert.hub, 20),
        audit=desk.audit.for_alert(alert.id),
        commands=desk.hubs.commands_for(alert_id=alert.id),
    )


def data_text(event: dict[str, Any]) -> str:
    text = json.dumps(event.get("data"), ensure_ascii=False, indent=1, sort_keys=True, default=str)
    return text if len(text) <= MAX_DATA_TEXT else text[:MAX_DATA_TEXT] + "…"


def command_summary(record: CommandRecord) -> str:
    """The hub's answer in a few words (the page says done/refused itself)."""
    result = record.result or {}
    parts: list[str] = []
    silenced = result.get("silenced")
    if isinstance(silenced, list):
        parts.append(", ".join(str(s) for s in silenced[:20]) or "–")
    for key in ("error", "id", "topic"):
        value = result.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
    hub_ts = result.get("ts")
    if isinstance(hub_ts, int | float) and not isinstance(hub_ts, bool):
        parts.append(f"ts {hub_ts}")
    return " · ".join(parts)[:MAX_SUMMARY]


def audit_summary(record: AuditRecord) -> str:
    detail = record.detail if isinstance(record.detail, dict) else {}
    parts = []
    for key in ("outcome", "note", "command", "name", "kind", "zone", "event", "step", "target"):
        value = detail.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            parts.append(f"{key}: {value}")
    return " · ".join(parts)[:MAX_SUMMARY]


def page_context(page: AlertPage) -> dict[str, Any]:
    """The template's values."""
    return {
        "alert": page.alert,
        "hub": page.hub,
        "events": [{**e, "data_text": data_text(e)} for e in page.events],
        "pictures": page.pictures,
        "snapshot_target": page.snapshot_target,
        "hub_events": page.hub_events,
        "audit": [
            {"at": r.at, "actor": r.actor, "action": r.action, "summary": audit_summary(r)}
            for r in page.audit
        ],
        "commands": [{**c.to_dict(), "summary": command_summary(c)} for c in page.commands],
    }

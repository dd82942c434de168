"""The receiver's own troubles about hubs (``commune.supervision``): stored as events, and
which are raised now.

A trouble raised is an event in ``events`` like a hub's (``source = "receiver"``, ``seq`` 0, its
JSON in ``payload``), so it has its alert, its history and its notifications like any other;
``hub_troubles`` keeps which are raised, so a restart of the desk neither raises one again nor
forgets to restore it. The event and the row change in one transaction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from commune.db import Db
from commune.store import INSERT_SQL, ReceivedEvent, event_row
from commune.supervision import Trouble
from core.events import KINDS, NEW, utc_iso
from core.ids import new_event_id

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hub_troubles (
        hub TEXT NOT NULL,
        kind TEXT NOT NULL,
        since TEXT NOT NULL,
        reason TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (hub, kind)
    )""",
)


class TroubleLog:
    """``hub_troubles`` and the events that raise and restore them, on a ``Db``."""

    def __init__(self, db: Db, commune: str) -> None:
        self.db = db
        self.commune = commune
        db.schema(SCHEMA)

    def raised(self) -> dict[str, dict[str, str]]:
        """The troubles raised now: hub → kind → the id of the event that raised it."""
        out: dict[str, dict[str, str]] = {}
        for row in self.db.read("SELECT hub, kind, event_id FROM hub_troubles"):
            out.setdefault(row["hub"], {})[row["kind"]] = row["event_id"]
        return out

    def all(self) -> list[dict[str, Any]]:
        """Every trouble raised now, by hub then kind, with since when and why."""
        return [dict(r) for r in self.db.read("SELECT * FROM hub_troubles ORDER BY hub, kind")]

    def report(self, hub: str, trouble: Trouble, qualifier: str, now: float) -> None:
        """Store the trouble (``NEW``) or its restore event for ``hub``, and what is raised, in
        one transaction; the alert follows from the event like any other."""
        at = utc_iso(now)
        kind = KINDS[trouble.kind]
        item = ReceivedEvent(
            id=new_event_id(),
            hub=hub,
            commune=self.commune,
            seq=0,
            kind=trouble.kind,
            priority=int(kind.priority),
            zone=trouble.zone,
            source="receiver",
            ts=at,
            clock_synced=True,
            cid=kind.cid,
            qualifier=qualifier,
            data={"reason": trouble.reason},
            received_at=at,
            payload="",
        )
        payload = {
            "id": item.id,
            "hub": hub,
            "seq": 0,
            "kind": item.kind,
            "priority": item.priority,
            "zone": item.zone,
            "source": item.source,
            "ts": at,
            "clock_synced": True,
            "cid": item.cid,
            "qualifier": qualifier,
            "data": item.data,
        }
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        with self.db.tx() as conn:
            self.db.events_write_lock(conn)
            conn.execute(INSERT_SQL, event_row(replace(item, payload=text)))
            if qualifier == NEW:
                conn.execute(
                    "INSERT INTO hub_troubles (hub, kind, since, reason, event_id) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (hub, kind) DO UPDATE SET "
                    "since = excluded.since, reason = excluded.reason, "
                    "event_id = excluded.event_id",
                    (hub, trouble.kind, at, trouble.reason, item.id),
                )
            else:
                conn.execute(
                    "DELETE FROM hub_troubles WHERE hub = ? AND kind = ?", (hub, trouble.kind)
                )
        log.warning(
            "hub %s: %s %s (%s)",
            hub,
            trouble.kind,
            "raised" if qualifier == NEW else "restored",
            trouble.reason,
        )

"""What the commune knows of each hub: the ones it expects and the ones it has heard.

``hubs`` has one row per hub: from the receiver config (name, place, coordinates, contact, its
supervision window) for an expected hub, and from the wire (its retained ``status``, its last
``health`` and whether that verified, its last event) for every hub heard. Two durations the
health cannot say are tracked here, from when the receiver first saw them: since when the hub
has reported undelivered alarms (``backlog_since``), and since when its clock has been
unsynchronised (``unsynced_since``).

``commands`` keeps each command the console sent (signed, for its operator) and the hub's
``cmd_result`` for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Any

from commune.db import SQLITE, Connection, Db, Row
from core.events import utc_now_iso

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hubs (
        hub TEXT PRIMARY KEY NOT NULL,
        expected INTEGER NOT NULL DEFAULT 0,
        name TEXT,
        place TEXT,
        latitude REAL,
        longitude REAL,
        contact TEXT,
        supervision_s REAL,
        first_seen_at TEXT,
        status TEXT,
        status_at TEXT,
        health TEXT,
        health_at TEXT,
        health_verified INTEGER,
        last_event_at TEXT,
        last_event_kind TEXT,
        backlog_since TEXT,
        unsynced_since TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS commands (
        id TEXT PRIMARY KEY NOT NULL,
        hub TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        operator TEXT NOT NULL,
        alert_id INTEGER,
        sent_at TEXT NOT NULL,
        result TEXT,
        result_at TEXT,
        ok INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS idx_commands_alert ON commands (alert_id, sent_at)",
)


@dataclass(frozen=True)
class ExpectedHub:
    """A hub the receiver config lists (``[[hubs]]``)."""

    hub: str
    name: str = ""
    place: str = ""
    latitude: float | None = None
    longitude: float | None = None
    contact: str = ""
    supervision_s: float | None = None  # None: the commune's default window


@dataclass(frozen=True)
class HubRow:
    hub: str
    expected: bool
    name: str | None
    place: str | None
    latitude: float | None
    longitude: float | None
    contact: str | None
    supervision_s: float | None
    first_seen_at: str | None
    status: str | None
    status_at: str | None
    health: dict[str, Any] | None
    health_at: str | None
    health_verified: bool | None
    last_event_at: str | None
    last_event_kind: str | None
    backlog_since: str | None
    unsynced_since: str | None

    @property
    def last_seen_at(self) -> str | None:
        """The newest sign of life: a health, an event, or an ``online`` status."""
        online_at = self.status_at if self.status == "online" else None
        seen = [t for t in (self.health_at, self.last_event_at, online_at) if t]
        return max(seen) if seen else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_seen_at"] = self.last_seen_at
        return out


@dataclass(frozen=True)
class CommandRecord:
    id: str
    hub: str
    name: str
    args: dict[str, Any]
    operator: str
    alert_id: int | None
    sent_at: str
    result: dict[str, Any] | None
    result_at: str | None
    ok: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HubBook:
    """The ``hubs`` and ``commands`` tables of a ``Db``."""

    def __init__(self, db: Db) -> None:
        self.db = db
        db.schema(SCHEMA)

    def set_expected(self, hubs: Iterable[ExpectedHub]) -> None:
        """Make the configured hubs the expected ones (a hub no longer listed stays known,
        as heard, but is no longer expected)."""
        listed = list(hubs)
        with self.db.tx() as conn:
            conn.execute("UPDATE hubs SET expected = 0")
            for h in listed:
                conn.execute(
                    "INSERT INTO hubs (hub, expected, name, place, latitude, longitude, contact, "
                    "supervision_s) VALUES (?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT(hub) DO UPDATE "
                    "SET expected = 1, name = excluded.name, place = excluded.place, "
                    "latitude = excluded.latitude, longitude = excluded.longitude, "
                    "contact = excluded.contact, supervision_s = excluded.supervision_s",
                    (h.hub, h.name, h.place, h.latitude, h.longitude, h.contact, h.supervision_s),
                )

    def record_status(self, hub: str, status: str, at: str | None = None) -> None:
        at = at or utc_now_iso()
        with self.db.tx() as conn:
            self._seen(conn, hub, at)
            conn.execute(
                "UPDATE hubs SET status = ?, status_at = ? WHERE hub = ?", (status, at, hub)
            )

    def record_health(
        self, hub: str, health: Mapping[str, Any], verified: bool | None, at: str | None = None
    ) -> None:
        """Keep the hub's latest health and track how long alarms have been undelivered and
        the clock unsynchronised (the first health that showed it, kept until one does not)."""
        at = at or utc_now_iso()
        outbox = health.get("outbox")
        backlog = isinstance(outbox, Mapping) and _positive(outbox.get("undelivered_alarm"))
        unsynced = health.get("clock_synced") is False
        text = json.dumps(health, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        with self.db.tx() as conn:
            self._seen(conn, hub, at)
            conn.execute(
                "UPDATE hubs SET health = ?, health_at = ?, health_verified = ?, "
                "backlog_since = CASE WHEN ? = 1 THEN coalesce(backlog_since, ?) END, "
                "unsynced_since = CASE WHEN ? = 1 THEN coalesce(unsynced_since, ?) END "
                "WHERE hub = ?",
                (
                    text,
                    at,
                    None if verified is None else int(verified),
                    int(backlog),
                    at,
                    int(unsynced),
                    at,
                    hub,
                ),
            )

    def record_event(self, hub: str, kind: str, at: str, conn: Connection | None = None) -> None:
        """A hub's event was stored (received at ``at``); inside ``conn``'s transaction when
        given."""
        with self.db.tx() if conn is None else nullcontext(conn) as conn:
            self._seen(conn, hub, at)
            conn.execute(
                "UPDATE hubs SET last_event_at = ?, last_event_kind = ? "
                "WHERE hub = ? AND (last_event_at IS NULL OR last_event_at <= ?)",
                (at, kind, hub, at),
            )

    @staticmethod
    def _seen(conn: Connection, hub: str, at: str) -> None:
        conn.execute(
            "INSERT INTO hubs (hub, first_seen_at) VALUES (?, ?) ON CONFLICT(hub) DO UPDATE "
            "SET first_seen_at = coalesce(hubs.first_seen_at, excluded.first_seen_at)",
            (hub, at),
        )

    def all(self, *, health: bool = True) -> list[HubRow]:
        """Every hub known, expected or heard, by id; without ``health`` their last health is
        left unread (None): supervision, once a second over thousands of hubs, needs only
        the times."""
        if health:
            return [_hub(r) for r in self.db.read("SELECT * FROM hubs ORDER BY hub")]
        columns = ", ".join(f.name for f in fields(HubRow) if f.name != "health")
        rows = self.db.read(f"SELECT {columns}, NULL AS health FROM hubs ORDER BY hub")
        return [_hub(r) for r in rows]

    def worth_a_look(self, silent_since: str, *, signed: bool) -> list[HubRow]:
        """The hubs supervision must judge (health unread): offline, tracking a backlog or an
        unsynchronised clock, never heard, or whose last sign of life (as
        ``commune.supervision.last_sign_of_life`` counts it) is older than ``silent_since``.
        The rest are alive on every count, and stay unread: with thousands of healthy hubs
        the look once a second costs an index-free scan, not thousands of objects."""
        health = "health_verified = 1" if signed else "coalesce(health_verified, 1) = 1"
        status = "0 = 1" if signed else "status = 'online'"
        greatest = "max" if self.db.dialect == SQLITE else "GREATEST"
        life = (
            f"{greatest}(coalesce(last_event_at, ''), "
            f"CASE WHEN {health} THEN coalesce(health_at, '') ELSE '' END, "
            f"CASE WHEN {status} THEN coalesce(status_at, '') ELSE '' END)"
        )
        columns = ", ".join(f.name for f in fields(HubRow) if f.name != "health")
        rows = self.db.read(
            f"SELECT {columns}, NULL AS health FROM hubs WHERE status = 'offline' "
            "OR backlog_since IS NOT NULL OR unsynced_since IS NOT NULL "
            f"OR {life} < ? ORDER BY hub",
            (silent_since,),
        )
        return [_hub(r) for r in rows]

    def get(self, hub: str) -> HubRow | None:
        row = self.db.read_one("SELECT * FROM hubs WHERE hub = ?", (hub,))
        return _hub(row) if row is not None else None

    # -- commands --------------------------------------------------------------------------

    def record_command(self, command: Mapping[str, Any], alert_id: int | None = None) -> None:
        """A signed command as it was published."""
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO commands (id, hub, name, args, operator, alert_id, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    str(command["id"]),
                    str(command["hub"]),
                    str(command["name"]),
                    json.dumps(command.get("args", {}), separators=(",", ":"), sort_keys=True),
                    str(command["operator"]),
                    alert_id,
                    utc_now_iso(),
                ),
            )

    def record_result(
        self, hub: str, result: Mapping[str, Any], at: str | None = None
    ) -> CommandRecord | None:
        """A hub's ``cmd_result``; the command it answers, or None for one we did not send
        (another console, or a forgery: nothing is recorded then)."""
        command_id = result.get("command_id")
        if not isinstance(command_id, str):
            return None
        ok = result.get("ok")
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE commands SET result = ?, result_at = ?, ok = ? "
                "WHERE id = ? AND hub = ? AND result IS NULL",
                (
                    json.dumps(dict(result), separators=(",", ":"), sort_keys=True),
                    at or utc_now_iso(),
                    int(ok) if isinstance(ok, bool) else None,
                    command_id,
                    hub,
                ),
            )
            if not cur.rowcount:
                return None
        return self.command(command_id)

    def command(self, command_id: str) -> CommandRecord | None:
        row = self.db.read_one("SELECT * FROM commands WHERE id = ?", (command_id,))
        return _command(row) if row is not None else None

    def commands_for(
        self, *, alert_id: int | None = None, hub: str | None = None
    ) -> list[CommandRecord]:
        """Commands of an alert (or a hub), newest first."""
        if alert_id is not None:
            rows = self.db.read(
                "SELECT * FROM commands WHERE alert_id = ? ORDER BY sent_at DESC", (alert_id,)
            )
        else:
            rows = self.db.read(
                "SELECT * FROM commands WHERE hub = ? ORDER BY sent_at DESC LIMIT 50", (hub,)
            )
        return [_command(r) for r in rows]


def sign_of_life(hubs: HubBook) -> Callable[[Connection, Row], None]:
    """The ``on_event`` hook of ``AlertBook.follow`` that records each hub's newest event in
    the same transaction (every console that follows the store passes it, so whichever follows
    an event first records it). The receiver's own supervision events speak about a hub, not
    for it, and do not count."""

    def record(conn: Connection, event: Row) -> None:
        if event["source"] != "receiver":
            hubs.record_event(event["hub"], event["kind"], event["received_at"], conn=conn)

    return record


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _hub(row: Row) -> HubRow:
    out = {k: row[k] for k in row.keys()}  # noqa: SIM118 (a store row)
    out["expected"] = bool(out["expected"])
    out["health"] = json.loads(out["health"]) if out["health"] else None
    if out["health_verified"] is not None:
        out["health_verified"] = bool(out["health_verified"])
    return HubRow(**out)


def _command(row: Row) -> CommandRecord:
    out = {k: row[k] for k in row.keys()}  # noqa: SIM118 (a store row)
    out["args"] = json.loads(out["args"])
    out["result"] = json.loads(out["result"]) if out["result"] else None
    if out["ok"] is not None:
        out["ok"] = bool(out["ok"])
    return CommandRecord(**out)

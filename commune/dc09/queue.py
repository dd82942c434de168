"""The durable DC-09 queue: the ``dc09_queue`` table of the receiver's store.

``follow`` reads the ``events`` table after its position (``commune.dc09.follow``) and queues
each event whose priority is forwarded, moving the position in the same transaction: a crash
neither loses an event nor queues one twice (``event_id`` is UNIQUE as well). The first time,
the position starts at the end of what is already stored: history from before the forwarder
was configured is not sent to the centre.

A row's DC-09 sequence number is fixed when it is queued (``(id - 1) % 9999 + 1``, so
0001..9999 wrapping), so every retry, across restarts too, sends the same number and the
receiver can recognise a repeat. Rows leave ``pending`` only as ``delivered`` (on the
receiver's ACK) or ``refused`` (its DUH: it received the message and cannot process it);
they are never deleted. The sender only ever tries the oldest pending row: delivery is in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from commune.db import Connection, Db, Row
from commune.dc09.config import Dc09Config
from commune.dc09.contact_id import Unmappable, contact_id, zone_number
from commune.dc09.follow import SQLITE, FollowSql, end_of_events, events_after
from core.events import utc_now_iso

log = logging.getLogger(__name__)

TABLE = "dc09_queue"
PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"
STATES = (PENDING, DELIVERED, REFUSED)
POSITION_KEY = "events_position"
MAX_ERROR_CHARS = 300
SEQUENCES = 9999

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        hub TEXT NOT NULL,
        kind TEXT NOT NULL,
        zone TEXT NOT NULL,
        zone_number INTEGER NOT NULL,
        cid INTEGER NOT NULL,
        qualifier TEXT NOT NULL,
        priority INTEGER NOT NULL,
        event_ts TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{PENDING}',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_attempt_at TEXT,
        done_at TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_state ON {TABLE} (state, id)",
    """CREATE TABLE IF NOT EXISTS dc09_zones (
        hub TEXT NOT NULL,
        zone TEXT NOT NULL,
        number INTEGER NOT NULL,
        PRIMARY KEY (hub, zone)
    )""",
    "CREATE TABLE IF NOT EXISTS dc09_meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER)",
)

_INSERT = (
    f"INSERT INTO {TABLE} (event_id, hub, kind, zone, zone_number, cid, qualifier, priority, "
    "event_ts, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_SET_POSITION = (
    "INSERT INTO dc09_meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True)
class Queued:
    """One row of the queue."""

    id: int
    event_id: str
    hub: str
    kind: str
    zone: str
    zone_number: int
    cid: int
    qualifier: str
    priority: int
    event_ts: str
    queued_at: str
    state: str
    attempts: int
    last_error: str | None
    last_attempt_at: str | None
    done_at: str | None

    @property
    def sequence(self) -> int:
        """The DC-09 sequence number, 1-9999."""
        return (self.id - 1) % SEQUENCES + 1


@dataclass(frozen=True)
class Followed:
    """What one ``follow`` did."""

    queued: int = 0  # events put in the queue
    passed: int = 0  # events of a priority that is not forwarded
    skipped: int = 0  # events that cannot be said in Contact ID (logged)


class Dc09Queue:
    """The queue's tables in ``db`` (made if missing), for the events ``config`` forwards."""

    def __init__(self, db: Db, config: Dc09Config, follow_sql: FollowSql = SQLITE) -> None:
        self.db = db
        self.config = config
        self.follow_sql = follow_sql
        self._priorities = frozenset(config.priorities)
        db.schema(SCHEMA)

    # -- following the events ----------------------------------------------------------------

    def position(self) -> int | None:
        """The position in ``events`` up to which everything was looked at (None: never)."""
        row = self.db.read_one("SELECT value FROM dc09_meta WHERE key = ?", (POSITION_KEY,))
        return None if row is None or row[0] is None else int(row[0])

    def follow(self, batch: int = 500) -> Followed:
        """Queue the events stored since the position, ``batch`` per transaction, until none is
        left. Raises a store error when the store refuses (a full disk): what was
        committed stays, the rest is queued by a later call."""
        total = Followed()
        while True:
            done, looked = self._follow_batch(batch)
            total = Followed(
                total.queued + done.queued, total.passed + done.passed, total.skipped + done.skipped
            )
            if looked < batch:
                return total

    def _follow_batch(self, limit: int) -> tuple[Followed, int]:
        queued = passed = skipped = 0
        with self.db.tx() as conn:
            found = conn.execute(
                "SELECT value FROM dc09_meta WHERE key = ?", (POSITION_KEY,)
            ).fetchone()
            if found is None:
                start = end_of_events(conn, self.follow_sql)
                conn.execute(_SET_POSITION, (POSITION_KEY, start))
                if start:
                    log.info("DC-09: forwarding what is stored after event position %d", start)
                return Followed(), 0
            rows = events_after(conn, int(found[0]), limit, self.follow_sql)
            if not rows:
                return Followed(), 0
            now = utc_now_iso()
            for row in rows:
                if row["priority"] not in self._priorities:
                    passed += 1
                elif self._enqueue(conn, row, now):
                    queued += 1
                else:
                    skipped += 1
            conn.execute(_SET_POSITION, (POSITION_KEY, int(rows[-1]["position"])))
        return Followed(queued, passed, skipped), len(rows)

    def _enqueue(self, conn: Connection, row: Row, now: str) -> bool:
        try:
            contact_id(row["qualifier"], row["cid"], 0)  # refuse now what could not be sent
            hub, zone = str(row["hub"]), str(row["zone"])
            number = zone_number(conn, hub, zone, self.config.zones, str(row["source"]))
        except Unmappable as exc:
            log.warning("DC-09: event %s of hub %s is not sent: %s", row["id"], row["hub"], exc)
            return False
        conn.execute(
            _INSERT,
            (
                row["id"],
                hub,
                row["kind"],
                zone,
                number,
                row["cid"],
                row["qualifier"],
                row["priority"],
                row["ts"],
                now,
            ),
        )
        return True

    # -- the sender's side -------------------------------------------------------------------

    def pending(self, limit: int = 1) -> list[Queued]:
        """The oldest pending rows, in the order they go."""
        rows = self.db.read(
            f"SELECT * FROM {TABLE} WHERE state = ? ORDER BY id LIMIT ?", (PENDING, limit)
        )
        return [Queued(**dict(r)) for r in rows]

    def get(self, row_id: int) -> Queued | None:
        row = self.db.read_one(f"SELECT * FROM {TABLE} WHERE id = ?", (row_id,))
        return Queued(**dict(row)) if row is not None else None

    def rows(self, state: str | None = None) -> list[Queued]:
        """Every row (in one state), in queue order."""
        if state is None:
            found = self.db.read(f"SELECT * FROM {TABLE} ORDER BY id")
        else:
            found = self.db.read(f"SELECT * FROM {TABLE} WHERE state = ? ORDER BY id", (state,))
        return [Queued(**dict(r)) for r in found]

    def mark_delivered(self, row_id: int, attempts: int) -> None:
        self._finish(row_id, DELIVERED, attempts, None)

    def mark_refused(self, row_id: int, attempts: int, reason: str) -> None:
        self._finish(row_id, REFUSED, attempts, reason)

    def mark_failed(self, row_id: int, attempts: int, error: str) -> None:
        """Attempt number ``attempts`` did not get an ACK; the row stays pending."""
        with self.db.tx() as conn:
            conn.execute(
                f"UPDATE {TABLE} SET attempts = ?, last_error = ?, last_attempt_at = ? "
                "WHERE id = ? AND state = ?",
                (attempts, error[:MAX_ERROR_CHARS], utc_now_iso(), row_id, PENDING),
            )

    def _finish(self, row_id: int, state: str, attempts: int, error: str | None) -> None:
        now = utc_now_iso()
        with self.db.tx() as conn:
            conn.execute(
                f"UPDATE {TABLE} SET state = ?, attempts = ?, last_error = ?, "
                "last_attempt_at = ?, done_at = ? WHERE id = ? AND state = ?",
                (state, attempts, error and error[:MAX_ERROR_CHARS], now, now, row_id, PENDING),
            )

    def counts(self) -> dict[str, int]:
        """Rows by state."""
        out = dict.fromkeys(STATES, 0)
        for state, count in self.db.read(f"SELECT state, count(*) FROM {TABLE} GROUP BY state"):
            out[str(state)] = int(count)
        return out

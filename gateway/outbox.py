"""The outbox: every accepted event lives in SQLite until the commune confirms it.

One thread owns an ``Outbox`` (the dispatcher's store thread); nothing here locks.

Durability: WAL with ``synchronous=FULL`` for every commit that adds events, so an event is on
disk when ``insert`` returns and survives kill -9 and power loss of the hub process (as far as
the storage honours fsync). Commits that only move rows between states use ``NORMAL``: losing
one to a power cut means an event is sent again, which receivers already deduplicate.

States: pending (0) → sent (1, broker PUBACK) → delivered (2, receipt; or PUBACK where no
receiver is configured). Delivered rows are pruned after a retention time. When the outbox
holds more undelivered rows than its limit, telemetry is evicted first, then detections, then
trouble reports; alarms are never evicted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import TuquanError
from core.events import Event, Priority
from core.signing import SigningKey
from gateway.signed_payloads import event_payload

log = logging.getLogger(__name__)

PENDING, SENT, DELIVERED = 0, 1, 2
_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "outbox" (\n'
    '   "seq" INTEGER PRIMARY KEY,\n'
    '   "id" TEXT NOT NULL,\n'
    '   "kind" TEXT NOT NULL,\n'
    '   "priority" INTEGER NOT NULL,\n'
    '   "state" INTEGER NOT NULL DEFAULT 0,\n'
    '   "created_at" REAL,\n'
    '   "sent_at" REAL,\n'
    '   "delivered_at" REAL,\n'
    '   "attempts" INTEGER DEFAULT 0,\n'
    '   "payload" BLOB NOT NULL\n'
    ")",
    'CREATE UNIQUE INDEX IF NOT EXISTS "idx_outbox_id"\n    ON "outbox" ("id")',
    'CREATE INDEX IF NOT EXISTS "idx_outbox_state_priority_seq"\n'
    '    ON "outbox" ("state", "priority", "seq")',
    'CREATE TABLE IF NOT EXISTS "meta" (\n   "key" TEXT PRIMARY KEY,\n   "value" INTEGER\n)',
)
_ALARM = int(Priority.ALARM)
# Never evicted, whatever the limit says.
_EVICTION_ORDER = (Priority.TELEMETRY, Priority.DETECTION, Priority.TROUBLE)


class OutboxDamaged(TuquanError):
    """The outbox file failed its integrity check."""


def _quick_check(conn: sqlite3.Connection) -> None:
    rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    if [r[0] for r in rows] != ["ok"]:
        found = "; ".join(str(r[0]).replace("\n", "; ") for r in rows)
        raise OutboxDamaged(f"quick_check: {found[:300]}")


@dataclass(frozen=True)
class Row:
    """An outbox row ready to publish."""

    seq: int
    kind: str
    priority: int
    payload: bytes


# The rows come back as one JSON array in one row: each row of a result is a step of SQLite,
# and each step lets go of the GIL, which paho's busy thread then takes. One step per batch,
# not per row, is what keeps a drain's store thread cheap (BENCHMARKS.md, drain throughput).
_AS_ONE_ROW = "SELECT json_group_array(json_array(seq, kind, priority, hex(payload))) FROM ({})"
_PENDING_IN = _AS_ONE_ROW.format(
    "SELECT seq, kind, priority, payload FROM outbox"
    " WHERE state=0 AND priority=? AND seq>? ORDER BY seq LIMIT ?"
)
_PENDING_AFTER = _AS_ONE_ROW.format(
    "SELECT seq, kind, priority, payload FROM outbox"
    " WHERE state=0 AND priority>? ORDER BY priority, seq LIMIT ?"
)


@dataclass
class OutboxStats:
    inserted: int = 0
    evicted: int = 0
    pruned: int = 0


class Outbox:
    def __init__(
        self,
        path: Path,
        hub: str,
        *,
        max_events: int = 100_000,
        delivered_retention_s: float = 86_400.0,
        check: bool = False,
        signer: SigningKey | None = None,
    ) -> None:
        """Open (or create) the file. ``check`` runs ``PRAGMA quick_check`` first and raises
        ``OutboxDamaged`` when it fails; a file that is not a database raises
        ``sqlite3.DatabaseError`` whatever ``check`` says. With ``signer`` (the hub's key) each
        event's stored payload carries its signature (gateway/signed_payloads.py)."""
        self.path = Path(path)
        self.hub = hub
        self.signer = signer
        self.max_events = max_events
        self.delivered_retention_s = delivered_retention_s
        self.stats = OutboxStats()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one commit can hold a batch.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._sync = ""
        try:
            if check:
                _quick_check(self.conn)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self._set_sync("FULL")
            self._create_schema()
            self.last_seq = self._load_last_seq()
            self.undelivered = self._count("state < 2")
        except BaseException:
            self.conn.close()
            raise

    # The interface a guarded outbox adds (gateway/guarded_outbox.py): a plain file has no
    # faults of its own to handle, so the store thread's calls to these do nothing here.
    generation = 0
    late_opens = 0

    def open(self) -> None:
        """Opened in the constructor already."""

    def maintain(self) -> None:
        """Nothing to retry."""

    def health(self) -> dict[str, Any]:
        return {"state": "ok"}

    def held(self, seq: int) -> bool:
        """Never: a row is on disk once ``insert`` returns."""
        return False

    def number(self, events: Sequence[Event]) -> list[Event] | None:
        """None: a plain file reserves no seqs ahead of its commit, so its alarms go out once
        committed (the guarded outbox reserves them and publishes alarms sooner)."""
        return None

    def payload(self, event: Event) -> bytes:
        return event_payload(event, self.hub, self.signer)

    # -- schema ---------------------------------------------------------------------------

    def _create_schema(self) -> None:
        # Written out, not built with sqlite-utils: importing it (and numpy behind it) cost the
        # hub 18 MB of its memory. The statements are the ones sqlite-utils wrote, to the byte.
        for sql in _SCHEMA:
            self.conn.execute(sql)

    def _load_last_seq(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        stored = int(row[0]) if row else 0
        top = self.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0
        return max(stored, int(top))

    def _count(self, where: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM outbox WHERE {where}").fetchone()[0])

    def _set_sync(self, level: str) -> None:
        if level != self._sync:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    # -- writes ---------------------------------------------------------------------------

    def insert(
        self, events: Sequence[Event], payloads: Mapping[str, bytes] | None = None
    ) -> list[Event]:
        """Commit events (one fsync for the batch) and return them with their ``seq``.

        Events whose id is already stored (a retried submit) are returned with their old seq.
        An event that already has a seq (given out while the disk refused writes, or before
        its commit) keeps it. ``payloads``: by event id, the payloads already made (and maybe
        published) for some of them, stored as they are.
        """
        if not events:
            return []
        now = time.time()
        stored: list[Event] = []
        added = 0
        self._set_sync("FULL")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            seq = self.last_seq
            for event in events:
                old = self.conn.execute("SELECT seq FROM outbox WHERE id=?", (event.id,)).fetchone()
                if old:
                    stored.append(replace(event, seq=int(old[0])))
                    continue
                if event.seq:
                    seq = max(seq, event.seq)
                else:
                    seq += 1
                    event = replace(event, seq=seq)
                self.conn.execute(
                    "INSERT INTO outbox (seq, id, kind, priority, state, created_at, payload)"
                    " VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (event.seq, event.id, event.kind, int(event.priority), now,
                     (payloads or {}).get(event.id) or event_payload(event, self.hub, self.signer)),
                )  # fmt: skip
                added += 1
                stored.append(event)
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (seq,)
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._added(seq, added)
        return stored

    def insert_rows(self, rows: Sequence[tuple[int, str, str, int, int, bytes]]) -> int:
        """Commit rows that already have their seq and payload: (seq, id, kind, priority,
        state, payload). Rows held in memory while the disk was full, or saved from a damaged
        file. A seq or id already stored is skipped. Returns the number added."""
        if not rows:
            return 0
        now = time.time()
        self._set_sync("FULL")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            added = 0
            for seq, event_id, kind, priority, state, payload in rows:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO outbox"
                    " (seq, id, kind, priority, state, created_at, sent_at, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, event_id, kind, priority, state, now, now if state else None, payload),
                )
                added += cur.rowcount
            top = max(self.last_seq, max(r[0] for r in rows))
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (top,)
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._added(top, added)
        return added

    def set_last_seq(self, seq: int) -> None:
        """Continue numbering after ``seq`` (never backwards): after a damaged file."""
        if seq <= self.last_seq:
            return
        self._set_sync("FULL")
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (seq,))
        self.last_seq = seq

    def _added(self, last_seq: int, added: int) -> None:
        self.last_seq = last_seq
        self.undelivered += added
        self.stats.inserted += added
        if self.undelivered > self.max_events:
            self._evict(self.undelivered - self.max_events)

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk does): a second ROLLBACK would
        # raise "no transaction is active" and hide the real error.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _state_change(self, sql: str, params: Iterable[object]) -> int:
        self._set_sync("NORMAL")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            changed = self.conn.execute(sql, tuple(params)).rowcount
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return int(changed)

    def _state_change_runs(self, sql: str, now: float, seqs: Sequence[int]) -> int:
        """``sql`` (with ``?`` for now, then a first and a last seq) once per run of
        consecutive seqs, in one commit: a drain's PUBACKs come in long runs, and a range of
        the primary key is cheaper for SQLite than a list of values."""
        self._set_sync("NORMAL")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            changed = 0
            for first, last in _runs(seqs):
                changed += self.conn.execute(sql, (now, first, last)).rowcount
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return changed

    def mark_sent(self, seqs: Sequence[int]) -> int:
        """The broker acknowledged these rows (PUBACK); a receipt may already have come."""
        if not seqs:
            return 0
        return self._state_change_runs(
            "UPDATE outbox SET state=1, sent_at=?, attempts=attempts+1"
            " WHERE state=0 AND seq BETWEEN ? AND ?",
            time.time(),
            seqs,
        )

    def mark_delivered(self, seqs: Sequence[int] = (), ids: Sequence[str] = ()) -> int:
        """Delivered by PUBACK (``seqs``, no receiver configured) or by receipt (``ids``)."""
        changed = 0
        if seqs:
            changed += self._state_change_runs(
                "UPDATE outbox SET state=2, delivered_at=? WHERE state<2 AND seq BETWEEN ? AND ?",
                time.time(),
                seqs,
            )
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            changed += self._state_change(
                f"UPDATE outbox SET state=2, delivered_at=? WHERE state<2 AND id IN ({marks})",
                (time.time(), *chunk),
            )
        self.undelivered -= changed
        return changed

    def requeue_unconfirmed(self, older_than_s: float) -> list[tuple[int, int]]:
        """Rows sent longer ago than this without a receipt go back to pending.

        Returns their (priority, seq) so the dispatcher can rewind its cursor."""
        cutoff = time.time() - older_than_s
        rows = self.conn.execute(
            "SELECT priority, seq FROM outbox WHERE state=1 AND sent_at < ?", (cutoff,)
        ).fetchall()
        if rows:
            self._state_change("UPDATE outbox SET state=0 WHERE state=1 AND sent_at < ?", (cutoff,))
        return [(int(p), int(s)) for p, s in rows]

    def requeue_sent(self, priority: int | None = None) -> list[tuple[int, int]]:
        """Every row sent without a receipt (of one priority, or all) goes back to pending.

        Returns their (priority, seq)."""
        where = "state=1" if priority is None else f"state=1 AND priority={int(priority)}"
        rows = self.conn.execute(f"SELECT priority, seq FROM outbox WHERE {where}").fetchall()
        if rows:
            self._state_change(f"UPDATE outbox SET state=0 WHERE {where}", ())
        return [(int(p), int(s)) for p, s in rows]

    def requeue_all_sent(self) -> int:
        """At start: rows sent by an earlier run have no receipt we know of; send them again."""
        return self._state_change("UPDATE outbox SET state=0 WHERE state=1", ())

    def _evict(self, excess: int) -> None:
        for priority in _EVICTION_ORDER:
            if excess <= 0:
                break
            victims = self.conn.execute(
                "SELECT seq, kind FROM outbox WHERE state<2 AND priority=? ORDER BY seq LIMIT ?",
                (int(priority), excess),
            ).fetchall()
            if not victims:
                continue
            seqs = [v[0] for v in victims]
            removed = 0
            for chunk in _chunks(seqs, 500):
                marks = ",".join("?" * len(chunk))
                removed += self._state_change(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)
            excess -= removed
            self.undelivered -= removed
            self.stats.evicted += removed
            log.warning(
                "outbox full: evicted %d %s events (limit %d)",
                removed,
                priority.name.lower(),
                self.max_events,
            )
        if excess > 0:
            log.warning(
                "outbox over its limit by %d alarm events; alarms are never evicted", excess
            )

    def prune_delivered(self) -> int:
        """Drop delivered rows past retention, and the oldest of them if the file is over size."""
        removed = self._state_change(
            "DELETE FROM outbox WHERE state=2 AND delivered_at < ?",
            (time.time() - self.delivered_retention_s,),
        )
        surplus = self.undelivered + self._count("state=2") - self.max_events
        if surplus > 0:
            removed += self._state_change(
                "DELETE FROM outbox WHERE seq IN"
                " (SELECT seq FROM outbox WHERE state=2 ORDER BY seq LIMIT ?)",
                (surplus,),
            )
        self.stats.pruned += removed
        return removed

    # -- reads ----------------------------------------------------------------------------

    def pending_alarms(self, after_seq: int, limit: int) -> list[Row]:
        cur = self.conn.execute(
            "SELECT seq, kind, priority, payload FROM outbox"
            " WHERE state=0 AND priority=0 AND seq>? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [Row(*r) for r in cur]

    def pending_after(self, priority: int, seq: int, limit: int) -> list[Row]:
        """Pending non-alarm rows after (priority, seq) in drain order.

        Index seeks, the rest of ``priority`` and then, only if that is not ``limit`` rows,
        the priorities after it: one ``priority>? OR (priority=? AND seq>?)`` makes SQLite
        walk every pending row before the cursor (rows in flight or acknowledged but not yet
        marked) on every call, and one UNION of the two sorts the rows it returns (a
        backlog's rows are nearly all of one priority)."""
        rows: list[Row] = []
        if priority > _ALARM:
            rows = self._rows_of(_PENDING_IN, (priority, seq, limit))
            if len(rows) == limit:
                return rows
        return rows + self._rows_of(_PENDING_AFTER, (max(priority, _ALARM), limit - len(rows)))

    def _rows_of(self, sql: str, params: tuple[int, ...]) -> list[Row]:
        [(packed,)] = self.conn.execute(sql, params).fetchall()
        # hex: the payload's bytes exactly, whatever they hold (its signature covers them)
        rows = [Row(s, k, p, bytes.fromhex(h)) for s, k, p, h in json.loads(packed)]
        rows.sort(key=lambda r: (r.priority, r.seq))  # SQLite keeps the order; not promised
        return rows

    def counts(self) -> dict[str, int]:
        """Rows by state and undelivered rows by priority, for health reports."""
        out = {"pending": 0, "sent": 0, "delivered": 0}
        names = {PENDING: "pending", SENT: "sent", DELIVERED: "delivered"}
        for state, n in self.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            out[names.get(state, str(state))] = int(n)
        for priority, n in self.conn.execute(
            "SELECT priority, count(*) FROM outbox WHERE state<2 GROUP BY priority"
        ):
            out[f"undelivered_{Priority(priority).name.lower()}"] = int(n)
        return out

    def state_of(self, event_id: str) -> int | None:
        row = self.conn.execute("SELECT state FROM outbox WHERE id=?", (event_id,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        self.conn.close()


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """The seqs as (first, last) runs of consecutive numbers, ascending."""
    runs: list[tuple[int, int]] = []
    ordered = sorted(set(seqs))
    if not ordered:
        return runs
    first = last = ordered[0]
    for seq in ordered[1:]:
        if seq != last + 1:
            runs.append((first, last))
            first = seq
        last = seq
    runs.append((first, last))
    return runs


def _chunks(items: list[object] | list[int] | list[str], size: int) -> Iterable[list[object]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])

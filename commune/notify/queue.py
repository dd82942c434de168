"""The durable notification queue: the ``notifications`` table of the receiver's store.

A row is written (``enqueue``) in the same transaction as what caused it (an escalation step, an
acknowledgement), so it exists exactly when its cause does, and once per (alert, type, step,
target): a UNIQUE constraint makes a repeat do nothing. It then stays ``pending`` until its
endpoint took it (a webhook answered 2xx; Zalo answered error 0 for every recipient) and becomes
``sent``. Rows are never deleted.

Order: a target's rows are delivered by id. The sender only ever tries a target's oldest pending
row (``heads``), so a target that was down receives, once it is back, every notification in the
order they were written. Delivery is at least once: a crash between the endpoint's answer and
the row being marked sends that row again (receivers dedupe on the row id,
``X-Tuquan-Delivery``).

Retries: exponential backoff from 1 s, doubling, capped at the target's ``retry_max_s`` (default
300), with up to 10 % taken off at random so targets that failed together do not retry in step.

A damaged row (a payload that is not a JSON object with a "type" and a "text", too long, nested
too deeply, holding NaN) can never be sent. It is marked ``damaged``: kept for an operator,
audited as a failed attempt, logged once, counted by ``counts()``; the target's next row goes
next, so one bad row never jams a target. That is the one way a row leaves ``pending`` without
being delivered: the queue writes every payload itself, so a damaged one means the file was
damaged or edited by hand.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from commune.audit import SYSTEM, AuditLog
from commune.db import Connection, Cursor, Db, Row
from core.errors import TuquanError
from core.events import utc_now_iso

log = logging.getLogger(__name__)

TABLE = "notifications"
PENDING, SENT, DAMAGED = "pending", "sent", "damaged"
STATES = (PENDING, SENT, DAMAGED)
MAX_PAYLOAD_CHARS = 256_000
FIRST_RETRY_S = 1.0
JITTER = 0.1  # up to this share of a wait is taken off at random
MAX_ERROR_CHARS = 300

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        step TEXT NOT NULL,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{PENDING}',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        sent_at TEXT,
        done TEXT NOT NULL DEFAULT '[]',
        UNIQUE (alert_id, kind, step, target)
    )""",
    f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_pending ON {TABLE} (state, target, id)",
)


class DamagedPayload(TuquanError):
    """A stored payload that cannot be sent; the message says why."""


@dataclass(frozen=True)
class Notification:
    """One row. ``kind`` is the payload's "type" (``alert.escalated``...); ``done`` the
    recipients that already have it (a Zalo target's followers), so a retry skips them."""

    id: int
    alert_id: int
    kind: str
    step: str
    target: str
    payload_text: str | None
    created_at: str
    state: str
    attempts: int
    next_attempt_at: float  # Unix seconds
    last_error: str | None
    sent_at: str | None
    done: tuple[str, ...]

    def payload(self) -> dict[str, Any]:
        """The payload as an object; raises DamagedPayload when it cannot be sent."""
        return parse_payload(self.payload_text)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "payload_text"}
        out["done"] = list(self.done)
        return out


def parse_payload(text: object) -> dict[str, Any]:
    """A stored payload, checked: a JSON object of at most ``MAX_PAYLOAD_CHARS`` with a string
    "type" and "text", without NaN or infinities."""
    if not isinstance(text, str):
        raise DamagedPayload(f"the payload is {type(text).__name__}, not text")
    if len(text) > MAX_PAYLOAD_CHARS:
        raise DamagedPayload(f"the payload is longer than {MAX_PAYLOAD_CHARS} characters")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DamagedPayload(f"the payload is not JSON: {str(exc)[:100]}") from None
    if not isinstance(value, dict):
        raise DamagedPayload(f"the payload is a JSON {type(value).__name__}, not an object")
    for key in ("type", "text"):
        if not isinstance(value.get(key), str):
            raise DamagedPayload(f"the payload has no {key!r} string")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def dump_payload(payload: Mapping[str, Any]) -> str:
    """The text a payload is stored (and sent, byte for byte) as."""
    return json.dumps(
        payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    )


def backoff(attempt: int, cap: float, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1 for the first): 1 s doubling, at
    most ``cap``, up to ``JITTER`` of it taken off at random."""
    base = min(FIRST_RETRY_S * 2.0 ** min(max(attempt - 1, 0), 60), cap)
    return base * (1.0 - JITTER * (rng or random).random())


class NotificationQueue:
    """The ``notifications`` table of a ``Db``, and the audit records of its attempts."""

    def __init__(self, db: Db, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit
        db.schema(SCHEMA)

    # -- writing -----------------------------------------------------------------------------

    def enqueue(
        self,
        alert_id: int,
        step: str,
        target: str,
        payload: Mapping[str, Any],
        *,
        conn: Connection | None = None,
    ) -> int | None:
        """Queue ``payload`` (an object with a string "type" and "text") for ``target``; inside
        ``conn``'s transaction when given. Returns the new row's id, or None when this alert's
        ``step`` of that type was already queued for that target. Raises ValueError for a
        payload that could not be sent, and a store error (``commune.db.STORE_ERRORS``) when it
        cannot be written (a full disk): nothing is queued then."""
        text = dump_payload(payload)
        parse_payload(text)  # refuse now what the sender would refuse later
        values = (alert_id, payload["type"], step, target, text, utc_now_iso(), time.time())
        sql = (
            f"INSERT INTO {TABLE} (alert_id, kind, step, target, payload, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id, kind, step, target) DO NOTHING RETURNING id"
        )
        if conn is not None:
            return _inserted(conn.execute(sql, values))
        with self.db.tx() as own:
            return _inserted(own.execute(sql, values))

    def record_attempt(self, n: Notification, attempt: int) -> None:
        """Audit that attempt number ``attempt`` at ``n`` starts (before the request, so an
        attempt the process did not live to record the end of is in the trail too)."""
        self.audit.append(SYSTEM, "notify_attempt", alert_id=n.alert_id, detail=_detail(n, attempt))

    def mark_sent(
        self, n: Notification, attempt: int, status: int | str | None, done: Sequence[str] = ()
    ) -> None:
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE {TABLE} SET state = ?, attempts = ?, sent_at = ?, last_error = NULL, "
                "done = ? WHERE id = ? AND state = ?",
                (SENT, attempt, utc_now_iso(), json.dumps(list(done)), n.id, PENDING),
            )
            if cur.rowcount:
                self.audit.append(
                    SYSTEM,
                    "notify_sent",
                    alert_id=n.alert_id,
                    detail=_detail(n, attempt, status=status),
                    conn=conn,
                )

    def mark_failed(
        self,
        n: Notification,
        attempt: int,
        error: str,
        retry_at: float,
        *,
        status: int | str | None = None,
        done: Sequence[str] = (),
    ) -> None:
        """Attempt ``attempt`` failed: try again at ``retry_at`` (Unix seconds)."""
        error = error[:MAX_ERROR_CHARS]
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE {TABLE} SET attempts = ?, next_attempt_at = ?, last_error = ?, done = ? "
                "WHERE id = ? AND state = ?",
                (attempt, retry_at, error, json.dumps(list(done)), n.id, PENDING),
            )
            if cur.rowcount:
                self.audit.append(
                    SYSTEM,
                    "notify_failed",
                    alert_id=n.alert_id,
                    detail=_detail(
                        n,
                        attempt,
                        status=status,
                        error=error,
                        retry_in_s=round(max(retry_at - time.time(), 0.0), 3),
                    ),
                    conn=conn,
                )

    def mark_damaged(self, n: Notification, reason: str) -> None:
        """Set aside a row that can never be sent (see the module's docstring)."""
        reason = f"damaged: {reason}"[:MAX_ERROR_CHARS]
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE {TABLE} SET state = ?, last_error = ? WHERE id = ? AND state = ?",
                (DAMAGED, reason, n.id, PENDING),
            )
            if cur.rowcount:
                self.audit.append(
                    SYSTEM,
                    "notify_failed",
                    alert_id=n.alert_id,
                    detail=_detail(n, n.attempts + 1, error=reason),
                    conn=conn,
                )
        log.warning(
            "notification %d (alert %s, target %s) set aside: %s",
            n.id,
            n.alert_id,
            n.target,
            reason,
        )

    # -- reading -----------------------------------------------------------------------------

    def heads(self) -> list[Notification]:
        """Each target's oldest pending row: the only one the sender may try (FIFO)."""
        rows = self.db.read(
            f"SELECT * FROM {TABLE} WHERE id IN (SELECT min(id) FROM {TABLE} "
            "WHERE state = ? GROUP BY target) ORDER BY id",
            (PENDING,),
        )
        return [_notification(r) for r in rows]

    def get(self, notification_id: int) -> Notification | None:
        row = self.db.read_one(f"SELECT * FROM {TABLE} WHERE id = ?", (notification_id,))
        return _notification(row) if row is not None else None

    def for_alert(self, alert_id: int) -> list[Notification]:
        rows = self.db.read(f"SELECT * FROM {TABLE} WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [_notification(r) for r in rows]

    def pending(self, target: str | None = None) -> list[Notification]:
        """Pending rows (of one target), in the order they will go."""
        if target is None:
            rows = self.db.read(f"SELECT * FROM {TABLE} WHERE state = ? ORDER BY id", (PENDING,))
        else:
            rows = self.db.read(
                f"SELECT * FROM {TABLE} WHERE state = ? AND target = ? ORDER BY id",
                (PENDING, target),
            )
        return [_notification(r) for r in rows]

    def targets_told(self, alert_id: int, conn: Connection | None = None) -> list[str]:
        """The targets an escalation of the alert was queued for, first told first."""
        sql = (
            f"SELECT target FROM {TABLE} WHERE alert_id = ? AND kind = 'alert.escalated' "
            "GROUP BY target ORDER BY min(id)"
        )
        if conn is not None:
            return [str(r[0]) for r in conn.execute(sql, (alert_id,)).fetchall()]
        rows = self.db.read(sql, (alert_id,))
        return [str(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows by state (``damaged`` is the count of rows set aside)."""
        out = dict.fromkeys(STATES, 0)
        for state, count in self.db.read(f"SELECT state, count(*) FROM {TABLE} GROUP BY state"):
            out[str(state)] = int(count)
        return out


def _inserted(cur: Cursor) -> int | None:
    row = cur.fetchone()
    return int(row[0]) if row is not None else None


def _detail(n: Notification, attempt: int, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "notification": n.id,
        "target": n.target,
        "step": n.step,
        "type": n.kind,
        "attempt": attempt,
    }
    out.update({k: v for k, v in more.items() if v is not None})
    return out


def _notification(row: Row) -> Notification:
    """A row as read, every column made safe to use: a row edited by hand must reach
    ``mark_damaged``, not crash the sender."""
    payload = row["payload"]
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", "replace")
    return Notification(
        id=int(row["id"]),
        alert_id=_int(row["alert_id"]),
        kind=str(row["kind"]),
        step=str(row["step"]),
        target=str(row["target"]),
        payload_text=payload if isinstance(payload, str) else None,
        created_at=str(row["created_at"]),
        state=str(row["state"]),
        attempts=max(_int(row["attempts"]), 0),
        next_attempt_at=_float(row["next_attempt_at"]),
        last_error=row["last_error"],
        sent_at=row["sent_at"],
        done=_done(row["done"]),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and abs(value) < 2**62 else 0


def _float(value: object) -> float:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0  # due now


def _done(value: object) -> tuple[str, ...]:
    """The recipients already done; unreadable means none (they get it again: at least once)."""
    try:
        items = json.loads(value) if isinstance(value, str) else []
    except (ValueError, RecursionError):
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(i for i in items if isinstance(i, str))

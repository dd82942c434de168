"""The escalation ladder: who is told when nobody acknowledges an alert.

``Escalator.tick()`` (the desk calls it about once a second) looks at every alert still ``new``
whose class (alarm, trouble, detection: ``[escalation] alerts``) escalates, and queues each step
of ``[escalation] steps`` whose ``after_s`` has passed since the alert opened and that was not
queued yet: one notification per target of the step. The step is recorded in ``escalations``
((alert_id, step) is its key) in the same transaction as its notifications and its "escalated"
audit record, so a step is queued exactly once, even across restarts and other processes. A
receiver that was down past several steps queues them all at once, in order.

Acknowledging stops the ladder: the transaction that queues a step first checks the alert is
still ``new``, so no step is queued after the acknowledgement committed. What was queued before
it is still delivered (nothing queued is ever dropped), and every target already told then gets
one follow-up, after those (delivery is in order per target): "alert.acknowledged" ("... đã
được NAME xác nhận" / "acknowledged by NAME"), so people stop running, or, for a trouble its
restore closed without anyone acknowledging it, "alert.closed" ("... restored by itself"). An
alert acknowledged before its first step is never escalated, so nothing is sent for it.

A store that cannot be written (a full disk) makes ``tick`` log once and return: nothing of the
step was recorded, so the next tick tries it again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from commune.alerts import NEW, RESTORED, Alert, AlertBook
from commune.audit import SYSTEM
from commune.db import STORE_ERRORS
from commune.desk_config import EscalationConfig
from commune.hubs import HubBook
from commune.notify import messages
from commune.notify.queue import NotificationQueue
from core.events import utc_now_iso

log = logging.getLogger(__name__)

ESCALATED, ACKNOWLEDGED, CLOSED = "alert.escalated", "alert.acknowledged", "alert.closed"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS escalations (
        alert_id INTEGER NOT NULL,
        step TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (alert_id, step)
    ) WITHOUT ROWID""",
    # One row per alert that climbed at least one step; stopped_at once its follow-ups are
    # queued. The partial index keeps "which ladders still run" small however long the history.
    """CREATE TABLE IF NOT EXISTS escalation_ladders (
        alert_id INTEGER PRIMARY KEY NOT NULL,
        started_at TEXT NOT NULL,
        stopped_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS idx_escalation_ladders_running ON escalation_ladders "
    "(alert_id) WHERE stopped_at IS NULL",
)


@dataclass(frozen=True)
class _Rung:
    """A step of the ladder and its place on it (1 for the first; 0 for a step the config no
    longer lists)."""

    index: int
    name: str
    after_s: float
    notify: tuple[str, ...] = ()


class Escalator:
    """Queues the ladder's notifications (see the module's docstring). ``console_url`` (the
    console's address as the people told can open it; default ``[escalation] console_url``)
    gives each notification a link to the alert; ``language`` is the console's ("vi", "en")."""

    def __init__(
        self,
        alerts: AlertBook,
        queue: NotificationQueue,
        config: EscalationConfig,
        hubs: HubBook | None = None,
        console_url: str | None = None,
        language: str = "vi",
    ) -> None:
        if language not in messages.LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(messages.LANGUAGES)}")
        self.alerts = alerts
        self.queue = queue
        self.config = config
        self.hubs = hubs
        url = console_url if console_url is not None else config.console_url
        self.console_url = url.rstrip("/") if url else None
        self.language = language
        self.db = alerts.db
        self.db.schema(SCHEMA)
        self._classes = frozenset(config.alerts)
        self._rungs = [
            _Rung(i, s.name, float(s.after_s), s.notify) for i, s in enumerate(config.steps, 1)
        ]
        self._failing = False
        self._bad_opened: set[int] = set()

    def tick(self, now: float | None = None) -> int:
        """Queue what is due at ``now`` (Unix seconds; default the clock); returns how many
        notifications were queued."""
        now = time.time() if now is None else now
        queued = 0
        try:
            queued += self._climb(now)
            queued += self._follow_up()
        except STORE_ERRORS as exc:
            if not self._failing:
                self._failing = True
                log.error("escalation: the store refused a write (%s); trying again", exc)
            return queued
        if self._failing:
            self._failing = False
            log.info("escalation: the store takes writes again")
        return queued

    # -- climbing ----------------------------------------------------------------------------

    def _climb(self, now: float) -> int:
        if not self._rungs:
            return 0
        waiting = [
            a
            for a in self.alerts.unacknowledged()
            if messages.alert_class(a.priority) in self._classes
        ]
        if not waiting:
            return 0
        done = self._steps_done()
        queued = 0
        for alert in waiting:
            opened = self._opened(alert)
            if opened is None:
                continue
            for rung in self._rungs:
                if now - opened < rung.after_s:
                    break
                if rung.name not in done.get(alert.id, ()):
                    queued += self._escalate(alert, rung)
        return queued

    def _steps_done(self) -> dict[int, set[str]]:
        rows = self.db.read(
            "SELECT e.alert_id, e.step FROM escalations e JOIN alerts a ON a.id = e.alert_id "
            "WHERE a.state = ?",
            (NEW,),
        )
        out: dict[int, set[str]] = {}
        for alert_id, step in rows:
            out.setdefault(int(alert_id), set()).add(str(step))
        return out

    def _opened(self, alert: Alert) -> float | None:
        try:
            opened = datetime.fromisoformat(alert.opened_at)
        except (TypeError, ValueError):
            if alert.id not in self._bad_opened:
                self._bad_opened.add(alert.id)
                log.warning(
                    "alert %d: opened_at %r is not a time; not escalated", alert.id, alert.opened_at
                )
            return None
        if opened.tzinfo is None:
            opened = opened.replace(tzinfo=UTC)
        return opened.timestamp()

    def _escalate(self, alert: Alert, rung: _Rung) -> int:
        hub = self._hub(alert.hub)
        text = messages.text(
            self.language,
            "escalated",
            what=messages.what(self.language, alert.priority, alert.kind),
            where=self._where(alert, hub),
            after=messages.duration(self.language, rung.after_s),
        )
        payload = self._payload(ESCALATED, alert, rung, hub, text)
        now = utc_now_iso()
        with self.db.tx() as conn:
            state = conn.execute("SELECT state FROM alerts WHERE id = ?", (alert.id,)).fetchone()
            if state is None or state[0] != NEW:
                return 0  # acknowledged meanwhile: the ladder stopped
            cur = conn.execute(
                "INSERT INTO escalations (alert_id, step, at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (alert.id, rung.name, now),
            )
            if not cur.rowcount:
                return 0  # another process queued it
            conn.execute(
                "INSERT INTO escalation_ladders (alert_id, started_at) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                (alert.id, now),
            )
            queued = [
                target
                for target in rung.notify
                if self.queue.enqueue(alert.id, rung.name, target, payload, conn=conn) is not None
            ]
            self.queue.audit.append(
                SYSTEM,
                "escalated",
                alert_id=alert.id,
                hub=alert.hub,
                detail={"step": rung.name, "after_s": rung.after_s, "notify": queued},
                at=now,
                conn=conn,
            )
        return len(queued)

    # -- stopping ----------------------------------------------------------------------------

    def _follow_up(self) -> int:
        """Tell the targets of every ladder that stopped since the last tick."""
        rows = self.db.read(
            "SELECT l.alert_id FROM escalation_ladders l JOIN alerts a ON a.id = l.alert_id "
            "WHERE l.stopped_at IS NULL AND a.state != ? ORDER BY l.alert_id",
            (NEW,),
        )
        return sum(self._stop(int(r[0])) for r in rows)

    def _stop(self, alert_id: int) -> int:
        alert = self.alerts.get(alert_id)
        if alert is None:
            return 0
        rung = self._last_rung(alert_id)
        hub = self._hub(alert.hub)
        what = messages.what(self.language, alert.priority, alert.kind)
        where = self._where(alert, hub)
        if alert.ack_by:
            kind = ACKNOWLEDGED
            text = messages.text(
                self.language, "acknowledged", what=what, where=where, user=alert.ack_by
            )
        else:
            kind = CLOSED
            message = "restored" if alert.outcome == RESTORED else "closed"
            text = messages.text(self.language, message, what=what, where=where)
        payload = self._payload(kind, alert, rung, hub, text)
        with self.db.tx() as conn:
            cur = conn.execute(
                "UPDATE escalation_ladders SET stopped_at = ? "
                "WHERE alert_id = ? AND stopped_at IS NULL",
                (utc_now_iso(), alert_id),
            )
            if not cur.rowcount:
                return 0
            queued = [
                target
                for target in self.queue.targets_told(alert_id, conn)
                if self.queue.enqueue(alert_id, rung.name, target, payload, conn=conn) is not None
            ]
            self.queue.audit.append(
                SYSTEM,
                "escalation_stopped",
                alert_id=alert_id,
                hub=alert.hub,
                detail={"by": alert.ack_by, "state": alert.state, "notify": queued},
                conn=conn,
            )
        return len(queued)

    def _last_rung(self, alert_id: int) -> _Rung:
        """The highest step the alert reached (one the config may no longer list)."""
        names = {
            str(r[0])
            for r in self.db.read("SELECT step FROM escalations WHERE alert_id = ?", (alert_id,))
        }
        reached = [r for r in self._rungs if r.name in names]
        if reached:
            return reached[-1]
        return _Rung(0, max(names) if names else "", 0.0)

    # -- the payload -------------------------------------------------------------------------

    def _hub(self, hub: str) -> dict[str, Any] | None:
        row = self.hubs.get(hub) if self.hubs is not None else None
        if row is None:
            return None
        return {
            "name": row.name,
            "place": row.place,
            "contact": row.contact,
            "latitude": row.latitude,
            "longitude": row.longitude,
        }

    @staticmethod
    def _where(alert: Alert, hub: dict[str, Any] | None) -> str:
        if hub is None:
            return messages.where(alert.hub, None, None)
        return messages.where(alert.hub, hub["name"], hub["place"])

    def _payload(
        self, kind: str, alert: Alert, rung: _Rung, hub: dict[str, Any] | None, text: str
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "alert": alert.to_dict(),
            "step": {"name": rung.name, "index": rung.index, "after_s": rung.after_s},
            "hub": hub,
            "url": f"{self.console_url}/alerts/{alert.id}" if self.console_url else None,
            "text": text,
        }

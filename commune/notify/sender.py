"""The sender: one thread that delivers the queued notifications that are due.

Each turn it reads each target's oldest pending row (``NotificationQueue.heads``) and tries the
ones that are due, one attempt each, then sleeps until the next one is due, ``wake()`` is
called (the escalation queued something), or ``POLL_S`` passed (rows another process queued, or
that a restart left pending). One attempt:

1. the payload is checked; a damaged one is set aside (``mark_damaged``) and the target's next
   row goes next;
2. ``notify_attempt`` is audited, the request made (``commune.notify.webhook`` or
   ``commune.notify.zalo``);
3. ``notify_sent`` or ``notify_failed`` is audited with the row's new state, in one
   transaction; a failure is retried after ``backoff`` (1 s doubling up to the target's
   ``retry_max_s``).

When the store cannot be written (a full disk) the endpoint's answer is kept in memory: a row
that was delivered is not sent again, only recorded once the disk has room. A row naming a
target the config no longer has is left pending, and logged once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from commune.audit import AuditLog
from commune.db import STORE_ERRORS, Db
from commune.desk_config import NotifyTarget, WebhookTarget
from commune.notify.channel import Channel, Delivery, Outcome, describe
from commune.notify.queue import DamagedPayload, Notification, NotificationQueue, backoff
from commune.notify.webhook import WebhookChannel
from commune.notify.zalo import ZaloChannel
from commune.notify.zalo_tokens import ZaloTokens

log = logging.getLogger(__name__)

POLL_S = 2.0  # the longest sleep: rows queued by another process are seen this late at worst
STORE_RETRY_S = 1.0  # after the store refused a write


@dataclass(frozen=True)
class _Kept:
    """An attempt's result, held in memory until the store records it."""

    attempt: int
    outcome: Outcome
    retry_at: float


class NotificationSender:
    """Delivers the ``notifications`` of ``db`` to ``targets`` (the config's ``notify``
    tables, by name). ``start``/``stop`` its thread; ``wake`` it when something was queued."""

    def __init__(
        self,
        db: Db,
        audit: AuditLog,
        targets: Mapping[str, NotifyTarget],
        *,
        queue: NotificationQueue | None = None,
        clock: Callable[[], float] = time.time,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self.queue = queue if queue is not None else NotificationQueue(db, audit)
        self.targets = dict(targets)
        self._clock = clock
        self._may_send = may_send  # False while another console holds the desk's duties
        self._rng = random.Random()
        self._client = httpx.Client()
        tokens = ZaloTokens(db)
        self._channels: dict[str, Channel] = {
            name: (
                WebhookChannel(name, target, self._client)
                if isinstance(target, WebhookTarget)
                else ZaloChannel(name, target, tokens, self._client, clock)
            )
            for name, target in self.targets.items()
        }
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Answers the store could not record (a full disk), by notification id.
        self._unrecorded: dict[int, _Kept] = {}
        self._store_failing = False
        self._unknown_logged: set[str] = set()
        self._failing: set[str] = set()  # targets whose last attempt failed (logged once)

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (an attempt under way finishes first, within its timeout)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for channel in self._channels.values():
            channel.close()
        self._client.close()

    def wake(self) -> None:
        """Look at the queue now (call it after queueing something)."""
        self._wake.set()

    def _run(self) -> None:
        troubled = False
        while not self._stopping.is_set():
            try:
                wait = self.run_once() if self._may_send() else POLL_S
            except Exception:  # the thread must outlive any surprise; the rows stay pending
                if not troubled:
                    log.exception("the notification sender failed; trying again")
                troubled, wait = True, POLL_S
            else:
                if troubled:
                    log.info("the notification sender works again")
                troubled = False
            self._wake.wait(wait)
            self._wake.clear()

    # -- one turn ----------------------------------------------------------------------------

    def run_once(self) -> float:
        """Try every due head once; return how long to sleep before the next is due."""
        now = self._clock()
        wait = POLL_S if self._record_unrecorded() else STORE_RETRY_S
        for head in self.queue.heads():
            if self._stopping.is_set():
                break
            channel = self._channels.get(head.target)
            if channel is None:
                self._unknown(head)
                continue
            kept = self._unrecorded.get(head.id)
            if kept is not None and kept.outcome.ok:
                continue  # delivered: only its record waits for the disk
            due_in = self._due_in(head, now, kept)
            if due_in > 0:
                wait = min(wait, due_in)
                continue
            self._attempt(head, channel, kept)
            wait = 0.0  # the target's next row may be due at once
        return wait

    def _due_in(self, head: Notification, now: float, kept: _Kept | None) -> float:
        due_in = (kept.retry_at if kept is not None else head.next_attempt_at) - now
        # A due time further away than the longest backoff: the clock went back. Go now.
        return 0.0 if due_in > self._retry_max(head.target) * 1.5 + 1 else due_in

    def _retry_max(self, target: str) -> float:
        return float(self.targets[target].retry_max_s)

    def _attempt(self, head: Notification, channel: Channel, kept: _Kept | None) -> None:
        try:
            payload = head.payload()
        except DamagedPayload as exc:
            reason = str(exc)
            self._store(lambda: self.queue.mark_damaged(head, reason))
            return
        attempt = max(head.attempts, kept.attempt if kept is not None else 0) + 1
        done = kept.outcome.done if kept is not None else head.done
        self._store(lambda: self.queue.record_attempt(head, attempt))
        assert head.payload_text is not None  # the payload parsed
        delivery = Delivery(
            id=head.id,
            alert_id=head.alert_id,
            target=head.target,
            attempt=attempt,
            payload=payload,
            body=head.payload_text.encode("utf-8"),
            done=done,
        )
        try:
            outcome = channel.send(delivery)
        except Exception as exc:  # an adapter's bug is one failed attempt, not a dead thread
            log.exception("notification %d to %s: the adapter failed", head.id, head.target)
            outcome = Outcome(False, error=describe(exc), done=done)
        self._log_outcome(head, attempt, outcome)
        retry_at = self._clock() + backoff(attempt, self._retry_max(head.target), self._rng)
        result = _Kept(attempt, outcome, retry_at)
        if self._record(head, result):
            self._unrecorded.pop(head.id, None)
        else:
            self._unrecorded[head.id] = result

    def _record(self, head: Notification, result: _Kept) -> bool:
        outcome = result.outcome
        if outcome.ok:
            return self._store(
                lambda: self.queue.mark_sent(head, result.attempt, outcome.status, outcome.done)
            )
        return self._store(
            lambda: self.queue.mark_failed(
                head,
                result.attempt,
                outcome.error or "failed",
                result.retry_at,
                status=outcome.status,
                done=outcome.done,
            )
        )

    def _record_unrecorded(self) -> bool:
        """Record the answers a full disk kept in memory; False while it still refuses."""
        for notification_id, result in list(self._unrecorded.items()):
            head = self.queue.get(notification_id)
            if head is None or head.state != "pending" or self._record(head, result):
                del self._unrecorded[notification_id]
            else:
                return False
        return True

    def _store(self, write: Callable[[], None]) -> bool:
        """Run one write to the store; a refusal is logged once and answered False."""
        try:
            write()
        except STORE_ERRORS as exc:
            if not self._store_failing:
                self._store_failing = True
                log.error("notifications: the store refused a write (%s); retrying", exc)
            return False
        if self._store_failing:
            self._store_failing = False
            log.info("notifications: the store takes writes again")
        return True

    def _log_outcome(self, head: Notification, attempt: int, outcome: Outcome) -> None:
        if outcome.ok:
            if head.target in self._failing:
                self._failing.discard(head.target)
                log.info("notifications to %s are delivered again", head.target)
            return
        if head.target not in self._failing:
            self._failing.add(head.target)
            log.warning(
                "notification %d to %s failed (attempt %d: %s); retrying until it is delivered",
                head.id,
                head.target,
                attempt,
                outcome.error,
            )

    def _unknown(self, head: Notification) -> None:
        if head.target not in self._unknown_logged:
            self._unknown_logged.add(head.target)
            log.warning(
                "notifications for %r wait: the config has no [notify.%s] any more "
                "(the first is %d, of alert %s)",
                head.target,
                head.target,
                head.id,
                head.alert_id,
            )

"""The sender: one thread that delivers the DC-09 queue in order over one TCP connection.

Each turn it takes the oldest pending row, builds its ``ADM-CID`` message (stamped now, with
the row's own sequence number) and waits ``ack_timeout_s`` for the reply
(``commune.dc09.replies``):

- **ACK** (the sequence, account and, with a key, an encrypted ACK that decrypts): delivered.
  The only way a row counts as delivered.
- **DUH**: the receiver got it and cannot process it; the row is marked ``refused`` and the next
  one goes (sending it again would not change the answer).
- **NAK**, **silence**, a **reply that does not decrypt**, **garbage**, or a broken connection:
  the same message (same sequence, new timestamp) is sent again after a backoff of 1 s doubling
  up to ``retry_max_s``. Silence and garbage close the connection first, a lost connection is
  made again (also with the backoff). A NAK whose timestamp is far from our clock tells us the
  receiver's time: later messages are stamped with it.

When nothing is pending and nothing was exchanged for ``link_test_s``, a ``NULL`` link test
goes (connecting if need be): a failed one backs off like a message.

Every outcome is counted (``Counters``, read by ``stats()``) and the state of the link is
logged once per change ("delivering", "cannot connect", "NAK", "silent"...). When the store
refuses a write (a full disk), an ACKed row is kept in memory as delivered and never sent
again; it is recorded once the disk has room.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from commune.db import STORE_ERRORS
from commune.dc09 import replies
from commune.dc09.config import Dc09Config
from commune.dc09.contact_id import Unmappable, contact_id
from commune.dc09.link import Link
from commune.dc09.messages import Message, Route, adm_cid, null
from commune.dc09.queue import Dc09Queue, Queued
from commune.notify.queue import backoff

log = logging.getLogger(__name__)

POLL_S = 1.0  # the longest sleep while idle: rows queued by another process are seen this late
SKEW_TRUSTED_S = 10.0  # a NAK's clock further off than this: stamp with the receiver's time
OK = "delivering"

COUNTERS = (
    "attempts",  # event messages sent
    "delivered",  # ... and ACKed
    "refused",  # ... answered DUH
    "naks",
    "silent",  # no reply within ack_timeout_s
    "undecryptable",  # an encrypted ACK that does not decrypt with our key
    "bad_replies",  # anything else that is not the ACK of what was sent
    "connects",
    "connect_failures",
    "disconnects",  # connections lost or closed after silence or garbage
    "link_tests",
    "link_tests_acked",
    "store_errors",  # writes the store refused (full disk)
)


class Counters:
    """Thread-safe tallies of what the sender did, and the state of the link."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.condition = "idle"
        self.detail = ""
        self.last_delivered_at: float | None = None
        self.clock_skew_s = 0.0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out.update(
            condition=self.condition,
            detail=self.detail,
            last_delivered_at=self.last_delivered_at,
            clock_skew_s=self.clock_skew_s,
        )
        return out


class Dc09Sender:
    """Delivers ``queue`` to the receiver ``config`` names. ``start``/``stop`` its thread;
    ``wake`` it when something was queued."""

    def __init__(
        self,
        queue: Dc09Queue,
        config: Dc09Config,
        *,
        clock: Callable[[], float] = time.time,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self._may_send = may_send  # False while another process holds the forwarding duty
        self.queue = queue
        self.config = config
        self.counters = Counters()
        self._clock = clock
        self._rng = random.Random()
        self._key = config.key_bytes()
        self._route = Route(config.receiver_number, config.line_prefix)
        self._link = Link(config.host, config.port, float(config.connect_timeout_s))
        self._failures = 0  # failed attempts in a row: the backoff grows with them
        self._retry_at = 0.0  # monotonic: nothing is tried before this
        self._quiet_since = time.monotonic()  # the last ACK (of anything)
        self._attempts: dict[int, int] = {}  # row id -> attempts so far (the store may lag)
        self._unrecorded: dict[int, int] = {}  # ACKed, not yet recorded (full disk): id -> attempts
        self._derived_logged: set[str] = set()
        self._store_failing = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="dc09-send", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (an exchange under way ends within a quarter of a second)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._link.close()
        self._set_condition("stopped", "")

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        troubled = False
        while not self._stopping.is_set():
            try:
                wait = self.run_once() if self._may_send() else POLL_S
            except Exception:  # the thread must outlive any surprise; the rows stay pending
                if not troubled:
                    log.exception("DC-09: the sender failed; trying again")
                troubled, wait = True, POLL_S
                self._link.close()
            else:
                troubled = False
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()

    # -- one turn ----------------------------------------------------------------------------

    def run_once(self) -> float:
        """Try the next message (or a link test) once; how long to sleep before the next turn."""
        self._record_unrecorded()
        now = time.monotonic()
        if now < self._retry_at:
            return self._retry_at - now
        head = self._head()
        if head is not None:
            self._deliver(head)
            return 0.0
        link_test_s = float(self.config.link_test_s)
        if link_test_s <= 0:
            return POLL_S
        due_in = self._quiet_since + link_test_s - now
        if due_in > 0:
            return min(due_in, POLL_S)
        self._link_test()
        return 0.0

    def _head(self) -> Queued | None:
        """The oldest pending row that is not already ACKed (awaiting its record)."""
        for row in self.queue.pending(len(self._unrecorded) + 1):
            if row.id not in self._unrecorded:
                return row
        return None

    def _deliver(self, row: Queued) -> None:
        try:
            event = contact_id(
                row.qualifier, row.cid, self.config.zones.get(row.zone, row.zone_number)
            )
        except Unmappable as exc:  # the row was damaged after it was queued
            self._store(self.queue.mark_refused, row.id, row.attempts, f"damaged: {exc}")
            return
        if not self._connected():
            return
        attempt = max(row.attempts, self._attempts.get(row.id, 0)) + 1
        self._attempts[row.id] = attempt
        account = self._account(row.hub)
        message = adm_cid(row.sequence, self._route, account, event, self._key, self._now())
        self.counters.add("attempts")
        verdict = self._exchange(message)
        if verdict is None:  # the connection broke (counted, retried), or stop() came
            if not self._stopping.is_set():
                self._store(self.queue.mark_failed, row.id, attempt, "the connection broke")
            return
        if verdict.delivered:
            self.counters.add("delivered")
            self.counters.last_delivered_at = self._clock()
            self._attempts.pop(row.id, None)
            if not self._store(self.queue.mark_delivered, row.id, attempt):
                self._unrecorded[row.id] = attempt
            self._succeeded()
        elif verdict.outcome == replies.DUH:
            self.counters.add("refused")
            self._attempts.pop(row.id, None)
            reason = f"DUH: {verdict.detail}"
            self._store(self.queue.mark_refused, row.id, attempt, reason)
            self._failures, self._retry_at = 0, 0.0  # the link works: the next row goes now
            self._quiet_since = time.monotonic()
            self._set_condition("refused (DUH)", f"sequence {row.sequence:04d}: {verdict.detail}")
        else:
            error = self._failed(verdict)
            self._store(self.queue.mark_failed, row.id, attempt, error)

    def _link_test(self) -> None:
        if not self._connected():
            return
        message = null(self._route, self.config.link_test_account, self._key, self._now())
        self.counters.add("link_tests")
        verdict = self._exchange(message)
        if verdict is None:
            return
        if verdict.delivered:
            self.counters.add("link_tests_acked")
            self._succeeded()
        else:
            self._failed(verdict)

    # -- the exchange and its outcome --------------------------------------------------------

    def _connected(self) -> bool:
        if self._link.connected:
            return True
        try:
            self._link.connect()
        except OSError as exc:
            self.counters.add("connect_failures")
            self._back_off("cannot connect", f"{self.config.host}:{self.config.port}: {exc}")
            return False
        self.counters.add("connects")
        return True

    def _exchange(self, message: Message) -> replies.Verdict | None:
        """Send and judge the reply; None (counted, backing off) when the connection failed."""
        try:
            reply = self._link.exchange(
                message.wire, float(self.config.ack_timeout_s), self._stopping
            )
        except OSError as exc:
            self._link.close()
            self.counters.add("disconnects")
            self._back_off("connection lost", str(exc) or type(exc).__name__)
            return None
        if self._stopping.is_set() and not reply.endswith(b"\r"):
            return None  # cut short by stop(): not an outcome (sent again after the restart)
        return replies.judge(message, reply, self._key, self._now())

    def _failed(self, verdict: replies.Verdict) -> str:
        """Count a reply that is not an ACK, back off; the error to record on the row."""
        outcome = verdict.outcome
        if outcome == replies.NAK:
            self.counters.add("naks")
            condition, detail = "NAK", self._nak_detail(verdict)
        elif outcome == replies.UNDECRYPTABLE:
            self.counters.add("undecryptable")
            condition, detail = "reply does not decrypt", verdict.detail + " (is the key right?)"
        elif outcome == replies.SILENT:
            self.counters.add("silent")
            condition, detail = "silent", f"no reply within {self.config.ack_timeout_s:g} s"
        else:
            self.counters.add("bad_replies")
            condition, detail = "bad reply", verdict.detail
        if outcome in (replies.SILENT, replies.BAD):
            self._link.close()  # the stream cannot be trusted to line up any more
            self.counters.add("disconnects")
        self._back_off(condition, detail)
        return f"{condition}: {detail}"

    def _nak_detail(self, verdict: replies.Verdict) -> str:
        skew = verdict.skew_s
        if skew is not None and abs(skew) > SKEW_TRUSTED_S:
            self.counters.clock_skew_s = self.counters.clock_skew_s + skew
            return (
                f"the receiver's clock is {skew:+.0f} s from ours: later messages are stamped "
                "with its time"
            )
        return (
            "the receiver refused the message (it could not decrypt or read it: is the key "
            "right, is the account known to it?)"
        )

    def _succeeded(self) -> None:
        self._failures = 0
        self._retry_at = 0.0
        self._quiet_since = time.monotonic()
        self._set_condition(OK, f"{self.config.host}:{self.config.port}")

    def _back_off(self, condition: str, detail: str) -> None:
        self._failures += 1
        wait = backoff(self._failures, float(self.config.retry_max_s), self._rng)
        self._retry_at = time.monotonic() + wait
        self._set_condition(condition, detail)

    def _set_condition(self, condition: str, detail: str) -> None:
        """Log once per change of the link's state."""
        counters = self.counters
        previous, counters.condition, counters.detail = counters.condition, condition, detail
        if condition == previous:
            return
        if condition == OK:
            log.info("DC-09: delivering to %s", detail)
        elif condition != "stopped":
            log.warning("DC-09: %s: %s; retrying until it is delivered", condition, detail)

    # -- small helpers -----------------------------------------------------------------------

    def _now(self) -> float:
        """Our clock, corrected by what the receiver's NAKs told of its own."""
        return self._clock() + self.counters.clock_skew_s

    def _account(self, hub: str) -> str:
        account = self.config.account_for(hub)
        if hub not in self.config.accounts and hub not in self._derived_logged:
            self._derived_logged.add(hub)
            log.warning(
                "DC-09: hub %s has no account in [forward.dc09.accounts]: sent as account %s",
                hub,
                account,
            )
        return account

    def _store(self, write: Callable[..., None], *args: Any) -> bool:
        """One write to the store; a refusal is counted, logged once and answered False."""
        try:
            write(*args)
        except STORE_ERRORS as exc:
            self.counters.add("store_errors")
            if not self._store_failing:
                self._store_failing = True
                log.error("DC-09: the store refused a write (%s); retrying", exc)
            return False
        if self._store_failing:
            self._store_failing = False
            log.info("DC-09: the store takes writes again")
        return True

    def _record_unrecorded(self) -> None:
        for row_id, attempts in list(self._unrecorded.items()):
            if not self._store(self.queue.mark_delivered, row_id, attempts):
                return
            del self._unrecorded[row_id]

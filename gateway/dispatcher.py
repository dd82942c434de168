"""The store thread: the one thread that owns the outbox.

Sensors, paho callbacks and the control channel only put work on its queue. Each turn it takes
everything queued, publishes the new alarms among it and commits the new events in one
transaction (group commit), applies PUBACKs and receipts, then hands the next rows to the uplink
in drain order (``gateway.pump``): alarms at once, outside any window, so a panic never waits
behind a backlog; everything else through a small window that paho's own thread keeps full
(``gateway.send_ahead``), so no thread is woken per message.

PUBACKs are written to the outbox in batches (``ack_batch`` rows, or after ``ack_delay_s``, or
at once when nothing else is in flight): each is a commit of its own, and a drain would otherwise
spend more time on them than on publishing. A row acknowledged but not yet marked stays out of
the pump; a power cut before its mark only means it is sent again, which receivers deduplicate.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from core.events import Event, Priority
from core.signing import SigningKey
from core.topics import HubTopics
from gateway.guarded_outbox import StorageRefused
from gateway.in_flight import InFlight
from gateway.pump import AnyOutbox, Publisher, Pump
from gateway.signed_payloads import health_payload

log = logging.getLogger(__name__)

T = TypeVar("T")
_ALARM = int(Priority.ALARM)
TURN_MAX_S = 1.0  # the store thread turns at least this often, busy or idle


@dataclass
class DispatcherStats:
    published: int = 0
    acked: int = 0
    rejected: int = 0
    receipts: int = 0
    resent: int = 0


class Dispatcher:
    def __init__(
        self,
        outbox: AnyOutbox,
        topics: HubTopics,
        *,
        receipts: bool = True,
        receipt_timeout_s: float = 60.0,
        health_interval_s: float = 30.0,
        window: int = 64,
        ack_batch: int = 256,
        ack_delay_s: float = 0.1,
        health_extra: Callable[[], dict[str, Any]] | None = None,
        prune_interval_s: float = 600.0,
        on_turn: Callable[[], None] | None = None,
        signer: SigningKey | None = None,
    ) -> None:
        self.outbox = outbox
        self.signer = signer  # the hub's key: health is signed with it
        self.topics = topics
        self.receipts = receipts
        self.receipt_timeout_s = receipt_timeout_s
        self.health_interval_s = health_interval_s
        self.prune_interval_s = prune_interval_s
        self.window = window
        self.ack_batch = ack_batch
        self.ack_delay_s = ack_delay_s
        self.health_extra = health_extra
        # Called by the store thread at every turn of its loop (at least once a second): the
        # proof that the thread which owns the outbox is alive (the systemd watchdog).
        self.on_turn = on_turn
        self.stats = DispatcherStats()
        self.uplink: Publisher | None = None
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="store", daemon=True)
        self._online = False
        self._inflight = InFlight()
        self.pump = Pump(outbox, topics, self._inflight, window, self.stats)
        self._acked: list[int] = []  # PUBACKed, not yet marked in the outbox
        self._acked_due = 0.0  # mark them by then at the latest
        # PUBACKs come in on paho's thread, one by one. They wait here, and the store thread is
        # woken once ``_puback_wake`` of them are waiting (a refill's worth, or all in flight),
        # not for each one: each wake-up is a GIL hand-over between the two busy threads.
        self._pubacks: deque[tuple[int, bool]] = deque()
        self._puback_wake = 1
        self._puback_woken = False
        self._retry: list[tuple[float, int, int]] = []  # (due, priority, seq) after a rejection
        self._stop_deadline: float | None = None
        self._uncommitted: list[tuple[list[Event], Future[list[Event]]]] = []
        # Held in memory while the disk refuses writes: their submitters (a serial node
        # waiting for its ACK) learn they are accepted once they are on disk or delivered.
        self._unsettled: list[tuple[list[Event], Future[list[Event]]]] = []
        self._started_at = time.monotonic()
        self.stopped = threading.Event()

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, uplink: Publisher) -> None:
        self.uplink = uplink
        self.pump.attach(uplink)

    def start(self) -> None:
        """Start the store thread; it opens the outbox (a slow or damaged file delays no
        input: events submitted meanwhile wait in the queue, the siren has sounded)."""
        self._thread.start()

    def _open(self) -> None:
        self.outbox.open()
        self._requeue_earlier_run()

    def _requeue_earlier_run(self) -> None:
        requeued = self.outbox.requeue_all_sent() if self.receipts else 0
        if requeued:
            log.info("%d events sent by an earlier run had no receipt; sending again", requeued)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Publish what can go out within the timeout, then end the thread."""
        self._queue.put(("stop", time.monotonic() + drain_timeout_s))
        self._thread.join(drain_timeout_s + 10.0)

    # -- producers (any thread) -----------------------------------------------------------

    def submit(self, events: Sequence[Event]) -> Future[list[Event]]:
        """Queue events for commit; the future resolves with them (``seq`` set) once on disk."""
        fut: Future[list[Event]] = Future()
        self._queue.put(("events", list(events), fut))
        return fut

    def call(self, fn: Callable[[Any], T]) -> Future[T]:
        """Run ``fn(outbox)`` on the store thread (reads for status and tests)."""
        fut: Future[T] = Future()
        self._queue.put(("call", fn, fut))
        return fut

    # Uplink handlers: paho's network thread.
    def on_connected(self) -> None:
        self._queue.put(("online", True))

    def on_disconnected(self) -> None:
        self._queue.put(("online", False))

    def on_published(self, mid: int, accepted: bool) -> None:
        self.pump.send_ahead.on_puback(mid)  # the next ready row goes out now, from this thread
        self._pubacks.append((mid, accepted))
        if not self._puback_woken and (len(self._pubacks) >= self._puback_wake or not accepted):
            self._puback_woken = True
            self._queue.put(("pubacks",))

    def on_receipt(self, ids: list[str]) -> None:
        """Ids of a receipt already found genuine (gateway/receipts.py)."""
        self._queue.put(("receipt", ids))

    def on_receiver_online(self) -> None:
        """The commune's receiver (re)subscribed: what it has not receipted goes out again now.

        Events the broker took while no receiver was subscribed (a broker restarted without
        persistence, a receiver that lost its session) are gone from the broker; without this
        they would wait for ``receipt_timeout_s``."""
        self._queue.put(("resend",))

    # -- the store thread -----------------------------------------------------------------

    def _run(self) -> None:
        self._open()
        generation, late_opens = self.outbox.generation, self.outbox.late_opens
        next_requeue = time.monotonic() + self.receipt_timeout_s / 4
        next_health = time.monotonic() + self.health_interval_s  # also published when online
        next_prune = time.monotonic() + self.prune_interval_s
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_requeue, next_health, next_prune, now + TURN_MAX_S) - now)
            if self._stop_deadline is not None:
                wait = min(wait, 0.05)
            if self._uncommitted:
                wait = min(wait, 0.5)
            if self._acked:
                wait = min(wait, max(0.0, self._acked_due - now))
            outstanding = self.pump.outstanding
            if outstanding:
                wait = min(wait, 0.2)  # a safety net: PUBACKs wake the thread themselves
            # Set before looking at the queue: a PUBACK arriving from here on sees it. Each
            # PUBACK of the window took one ready row: a refill's worth wakes the thread.
            self._puback_wake = max(1, min(self.pump.refill, outstanding))
            if len(self._pubacks) >= self._puback_wake:
                wait = 0.0
            try:
                ops = [self._queue.get(timeout=wait)]
            except queue.Empty:
                ops = []
            while True:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.outbox.maintain()
                if self.outbox.late_opens != late_opens:
                    late_opens = self.outbox.late_opens
                    self._requeue_earlier_run()
                if self.outbox.generation != generation:
                    # A fresh file with rows saved from a damaged one, or marks that could not
                    # be written: look at every pending row again.
                    generation = self.outbox.generation
                    self.pump.restart()
                self._apply(ops)
                if self._unsettled:
                    self._settle()
                now = time.monotonic()
                if now >= next_requeue:
                    self._requeue_unconfirmed()
                    next_requeue = now + max(0.05, self.receipt_timeout_s / 4)
                if now >= next_prune:
                    self.outbox.prune_delivered()
                    next_prune = now + self.prune_interval_s
                if now >= next_health:
                    self._publish_health()
                    next_health = now + self.health_interval_s
                self._pump()
            except Exception:
                # A failing disk must not end the thread: the events stay queued or on disk.
                log.exception("store thread error")
                time.sleep(0.5)
            if self.on_turn is not None:
                try:
                    self.on_turn()
                except Exception:
                    log.exception("store thread turn hook failed")
            if self._stop_deadline is not None and (
                time.monotonic() >= self._stop_deadline or self._drained()
            ):
                break
        for _, fut in self._unsettled:
            fut.set_exception(StorageRefused("stopped before the outbox could be written"))
        self.stopped.set()

    def _apply(self, ops: list[tuple[Any, ...]]) -> None:
        new_events: list[tuple[list[Event], Future[list[Event]]]] = []
        acked: list[int] = []
        receipt_ids: list[str] = []
        calls: list[tuple[Callable[[Any], Any], Future[Any]]] = []
        resend = False
        self._puback_woken = False  # before taking them: a later PUBACK wakes the thread again
        pubacks = self._pubacks
        # The PUBACKs taken now, then what was published: a row's publish is always noted
        # before its PUBACK arrives, so every PUBACK taken finds its row.
        taking = len(pubacks)
        self.pump.note_sent()
        for _ in range(taking):
            mid, accepted = pubacks.popleft()
            seq = self._puback(mid, accepted)
            if seq is not None:
                acked.append(seq)
        for op in ops:
            tag = op[0]
            if tag == "events":
                new_events.append((op[1], op[2]))
            elif tag == "receipt":
                receipt_ids.extend(op[1])
            elif tag == "online":
                self._set_online(op[1])
            elif tag == "resend":
                resend = True
            elif tag == "call":
                calls.append((op[1], op[2]))
            elif tag == "stop":
                self._stop_deadline = op[1]
        if new_events or self._uncommitted:
            if self._online and not self._uncommitted:
                self.pump.publish_alarms_first(new_events)
            self._commit(new_events)
            if self._online:
                self.pump.alarms()  # a new alarm goes out before any bookkeeping below
        if acked:
            self.stats.acked += len(acked)
            if not self._acked:
                self._acked_due = time.monotonic() + self.ack_delay_s
            self._acked.extend(acked)
        if self._acked and (
            len(self._acked) >= self.ack_batch
            or not self.pump.outstanding
            or calls
            or self._stop_deadline is not None
            or time.monotonic() >= self._acked_due
        ):
            self._mark_acked()
        if receipt_ids:
            self.stats.receipts += self.outbox.mark_delivered(ids=receipt_ids)
        if resend:
            self._resend_unreceipted(alarms_only=False)
        # Last, so a call sees everything queued before it (events submitted first included).
        for fn, fut in calls:
            try:
                fut.set_result(fn(self.outbox))
            except Exception as exc:
                fut.set_exception(exc)

    def _mark_acked(self) -> None:
        """Write the PUBACKs gathered so far (sent, or delivered where there are no receipts)."""
        seqs = self._acked
        if self.receipts:
            self.outbox.mark_sent(seqs)
        else:
            self.outbox.mark_delivered(seqs=seqs)
        self._acked = []
        self._inflight.marked(seqs)

    def _commit(self, batches: list[tuple[list[Event], Future[list[Event]]]]) -> None:
        batches = self._uncommitted + batches
        self._uncommitted = []
        flat = [e for events, _ in batches for e in events]
        try:
            stored = self.outbox.insert(flat)
        except Exception:
            # A full or failing disk: keep the events in memory and try again next turn (the
            # siren already sounded; nothing is dropped while the process lives).
            log.exception("could not commit %d events; retrying", len(flat))
            self._uncommitted = batches
            return
        start = 0
        for events, fut in batches:
            mine = stored[start : start + len(events)]
            start += len(events)
            refused = [e.kind for e in mine if not e.seq]
            if refused:
                fut.set_exception(
                    StorageRefused(f"the outbox cannot be written; refused: {', '.join(refused)}")
                )
            elif any(self.outbox.held(e.seq) for e in mine):
                self._unsettled.append((mine, fut))  # published from memory; accepted later
            else:
                fut.set_result(mine)
        for event in stored:
            if event.seq:
                self.pump.rewind(int(event.priority), event.seq)

    def _settle(self) -> None:
        waiting = []
        for events, fut in self._unsettled:
            if any(self.outbox.held(e.seq) for e in events):
                waiting.append((events, fut))
            else:
                fut.set_result(events)
        self._unsettled = waiting

    def _puback(self, mid: int, accepted: bool) -> int | None:
        entry = self._inflight.acked(mid)
        if entry is None:
            return None  # status/health messages, or an entry we already gave up on
        if accepted:
            return entry.seq  # out of the window now; still out until marked (_mark_acked)
        self._inflight.give_up(entry)
        # The broker refused it (ACL, quota): keep the row and try again later, not in a loop.
        self.stats.rejected += 1
        log.error("broker rejected event seq %d; retrying in 30 s", entry.seq)
        heapq.heappush(self._retry, (time.monotonic() + 30.0, entry.priority, entry.seq))
        return None

    def _set_online(self, online: bool) -> None:
        self._online = online
        if online:
            # paho re-sends what it still holds; give those their full time again.
            self._inflight.restart_clocks(time.monotonic())
            # The broker may have lost what it PUBACKed (a restart without persistence): alarms
            # not yet receipted go out again at once, not after the receipt timeout.
            self._resend_unreceipted(alarms_only=True)
            self._publish_health()

    def _resend_unreceipted(self, *, alarms_only: bool) -> None:
        """Send again, now, rows that were sent but have no receipt (all, or alarms only)."""
        if not self.receipts:
            return
        if self._acked:
            self._mark_acked()
        if not alarms_only:
            # In flight when the receiver came back: the broker may have routed them before
            # its subscription; forget them so the pump sends them again (receivers dedupe).
            self.pump.note_sent()
            for _, entry in self._inflight.take_all():
                self.pump.rewind(entry.priority, entry.seq)
        rows = self.outbox.requeue_sent(_ALARM if alarms_only else None)
        if rows:
            log.info(
                "sending %d unreceipted %s again (%s)",
                len(rows),
                "alarms" if alarms_only else "events",
                "reconnected" if alarms_only else "the receiver is back",
            )
            self.stats.resent += len(rows)
        for priority, seq in rows:
            self.pump.rewind(priority, seq)

    def _requeue_unconfirmed(self) -> None:
        now = time.monotonic()
        if self._online:
            self.pump.note_sent()
            taken = self._inflight.take_older(now, self.receipt_timeout_s)
            self.pump.send_ahead.release([mid for mid, _ in taken])
            for _, entry in taken:
                self.pump.rewind(entry.priority, entry.seq)
        if self.receipts:
            rows = self.outbox.requeue_unconfirmed(self.receipt_timeout_s)
            if rows:
                log.warning("%d sent events had no receipt in time; sending again", len(rows))
                self.stats.resent += len(rows)
            for priority, seq in rows:
                self.pump.rewind(priority, seq)
        while self._retry and self._retry[0][0] <= now:
            _, priority, seq = heapq.heappop(self._retry)
            self.pump.rewind(priority, seq)

    def _pump(self) -> None:
        if self._online:
            self.pump.alarms()
            self.pump.backlog()

    def _drained(self) -> bool:
        return not self._online or self.pump.drained()

    def _publish_health(self) -> None:
        uplink = self.uplink
        if uplink is None or not self._online:
            return
        uplink.publish_json(self.topics.health, self.health(), retain=True)

    def health(self) -> dict[str, Any]:
        """The health payload, as published, signed with the hub's key if it has one (store
        thread: it reads the outbox)."""
        health: dict[str, Any] = {
            "hub": self.topics.hub,
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "last_seq": self.outbox.last_seq,
            "outbox": self.outbox.counts(),
            "evicted": self.outbox.stats.evicted,
            "storage": self.outbox.health(),
            "in_flight": len(self._inflight),
            "resent": self.stats.resent,
        }
        if self.health_extra is not None:
            health.update(self.health_extra())
        return health_payload(health, self.signer)

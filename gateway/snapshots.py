"""Camera snapshots to MQTT: ``snapshot/<event-id>``, the JPEG itself, QoS 1, not retained.

The cameras hand each snapshot to ``SnapshotPublisher.put`` (their snapshot sink, on the camera's
thread): it marks the snapshot pending (an empty ``<event-id>.pending`` file), stores the JPEG in
the ``SnapshotStore`` (``<event-id>.jpg``, under the store's size cap), and queues it. One thread,
``snapshots``, publishes pending snapshots while the hub is online and drops the mark when the
broker acknowledges one (PUBACK). So snapshots taken while the broker is unreachable, or before a
restart, go out once the hub is online again, as long as the store still holds them:

* snapshots taken while online go first, so a new incident's picture never waits behind a
  backlog; the backlog goes out oldest first (event ids sort by time);
* at most ``window`` snapshots are in flight at once, so paho's queue never holds more than a
  few pictures ahead of an alarm;
* one not acknowledged within ``resend_after_s`` while online is published again.

A snapshot the store has already deleted to stay under its cap is dropped from the queue
(``lost`` in health). ``republish`` (the ``cmd/snapshot`` command) queues a stored snapshot again.

Snapshots are not receipted like events: the broker's PUBACK ends a snapshot's time in the
queue, and the picture stays in the store until the cap pushes it out.
"""

from __future__ import annotations

import heapq
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.topics import HubTopics

log = logging.getLogger(__name__)

PENDING = ".pending"


class Store(Protocol):
    """What the publisher needs of ``sensors.camera.snapshots.SnapshotStore``."""

    dir: Path

    def path(self, event_id: str) -> Path: ...

    def put(self, event_id: str, jpeg: bytes) -> Path: ...

    def get(self, event_id: str) -> bytes | None: ...

    def total_bytes(self) -> int: ...


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> int: ...


@dataclass
class _InFlight:
    event_id: str
    since: float


@dataclass
class SnapshotStats:
    stored: int = 0  # snapshots put since start
    published: int = 0  # PUBACKed
    republished: int = 0  # queued again by cmd/snapshot
    lost: int = 0  # deleted by the store's cap before they could be published
    failed: int = 0  # could not be stored


class SnapshotPublisher:
    def __init__(
        self,
        store: Store,
        topics: HubTopics,
        uplink: Publisher,
        *,
        window: int = 4,
        resend_after_s: float = 60.0,
    ) -> None:
        self.store = store
        self.topics = topics
        self.uplink = uplink
        self.window = window
        self.resend_after_s = resend_after_s
        self.stats = SnapshotStats()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        # Owned by the snapshot thread:
        self._online = False
        self._fresh: deque[str] = deque()  # taken while online, or asked for again: first
        self._backlog: list[str] = []  # a heap of event ids: oldest first
        self._queued: set[str] = set()
        self._inflight: dict[int, _InFlight] = {}
        # PUBACKs from paho's thread wait here for the snapshot thread (see on_published);
        # _publishing covers the moment between publish() and the entry in _inflight.
        self._pubacks: deque[tuple[int, bool]] = deque()
        self._puback_woken = False
        self._publishing = False
        self._pending = 0  # for health (read from other threads)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Queue the snapshots an earlier run had not published, then start the thread."""
        for event_id in self._marked():
            self._enqueue(event_id, fresh=False)
        if self._backlog:
            log.info("%d snapshots from before the start wait to be published", len(self._backlog))
        self._pending = len(self._queued)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join(timeout)

    # -- producers (any thread) -----------------------------------------------------------

    def put(self, event_id: str, jpeg: bytes) -> Path:
        """The cameras' snapshot sink (camera threads): store, mark pending, queue."""
        marker = self._marker(event_id)  # ValueError for an id unfit for a file name
        try:
            marker.touch()
            path = self.store.put(event_id, jpeg)
        except Exception:
            self.stats.failed += 1
            marker.unlink(missing_ok=True)
            raise
        self.stats.stored += 1
        self._queue.put(("new", event_id))
        return path

    def has(self, event_id: str) -> bool:
        try:
            return self.store.path(event_id).is_file()
        except ValueError:
            return False

    def republish(self, event_id: str) -> bool:
        """Publish a stored snapshot again (``cmd/snapshot``); False if the store lacks it."""
        if not self.has(event_id):
            return False
        self.stats.republished += 1
        self._queue.put(("again", event_id))
        return True

    # Uplink handlers: paho's network thread; they only enqueue.
    def on_connected(self) -> None:
        self._queue.put(("online", True))

    def on_disconnected(self) -> None:
        self._queue.put(("online", False))

    def on_published(self, mid: int, accepted: bool) -> None:
        """Every PUBACK of the hub's client comes here, most of them for events. Only while a
        snapshot is in flight (or being published) are they kept, and the snapshot thread is
        woken once for all that came in since its last turn, not once for each."""
        if not (self._inflight or self._publishing):
            return
        self._pubacks.append((mid, accepted))
        if not self._puback_woken:
            self._puback_woken = True
            self._queue.put(("pubacks",))

    def health(self) -> dict[str, Any]:
        try:
            stored_bytes = self.store.total_bytes()
        except OSError:
            stored_bytes = -1
        return {
            "pending": self._pending,
            "in_flight": len(self._inflight),
            "bytes": stored_bytes,
            **self.stats.__dict__,
        }

    # -- the snapshot thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            wait = 1.0 if self._inflight else None
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
                self._puback_woken = False  # before taking them: a later one wakes us again
                while self._pubacks:
                    mid, accepted = self._pubacks.popleft()
                    self._apply(("puback", mid, accepted))
                for op in ops:
                    if op[0] == "stop":
                        return
                    if op[0] != "pubacks":
                        self._apply(op)
                self._resend_stale()
                self._pump()
            except Exception:
                log.exception("snapshot thread error")
                time.sleep(0.5)
            self._pending = len(self._queued) + len(self._inflight)

    def _apply(self, op: tuple[Any, ...]) -> None:
        tag = op[0]
        if tag == "new":
            self._enqueue(op[1], fresh=self._online)
        elif tag == "again":
            self._enqueue(op[1], fresh=True, again=True)
        elif tag == "online":
            self._online = bool(op[1])
            if self._online:
                now = time.monotonic()
                for sending in self._inflight.values():  # paho sends these again itself
                    sending.since = now
        elif tag == "puback":
            entry = self._inflight.pop(op[1], None)
            if entry is None:
                return  # an event, status or health message
            if op[2]:
                self.stats.published += 1
                if entry.event_id not in self._queued:
                    self._marker(entry.event_id).unlink(missing_ok=True)
            else:
                log.error("broker rejected snapshot %s; queued again", entry.event_id)
                self._enqueue(entry.event_id, fresh=False)

    def _enqueue(self, event_id: str, *, fresh: bool, again: bool = False) -> None:
        if event_id in self._queued:
            if not again:
                return
            # Asked for again while queued: move it to the front.
            self._backlog = [e for e in self._backlog if e != event_id]
            heapq.heapify(self._backlog)
            if event_id in self._fresh:
                self._fresh.remove(event_id)
        self._queued.add(event_id)
        if again:
            self._fresh.appendleft(event_id)
        elif fresh:
            self._fresh.append(event_id)
        else:
            heapq.heappush(self._backlog, event_id)

    def _next(self) -> str | None:
        if self._fresh:
            event_id = self._fresh.popleft()
        elif self._backlog:
            event_id = heapq.heappop(self._backlog)
        else:
            return None
        self._queued.discard(event_id)
        return event_id

    def _pump(self) -> None:
        while self._online and len(self._inflight) < self.window:
            event_id = self._next()
            if event_id is None:
                return
            jpeg = self.store.get(event_id)
            if jpeg is None:
                self.stats.lost += 1
                self._marker(event_id).unlink(missing_ok=True)
                log.warning("snapshot %s was deleted (size cap) before it was published", event_id)
                continue
            self._publishing = True
            try:
                mid = self.uplink.publish(self.topics.snapshot(event_id), jpeg, qos=1)
                self._inflight[mid] = _InFlight(event_id, time.monotonic())
            finally:
                self._publishing = False

    def _resend_stale(self) -> None:
        if not self._online:
            return
        now = time.monotonic()
        stale = [m for m, e in self._inflight.items() if now - e.since > self.resend_after_s]
        for mid in stale:
            entry = self._inflight.pop(mid)
            log.warning("snapshot %s not acknowledged in time; published again", entry.event_id)
            self._enqueue(entry.event_id, fresh=False)

    # -- the pending marks ----------------------------------------------------------------

    def _marker(self, event_id: str) -> Path:
        return self.store.path(event_id).with_suffix(PENDING)

    def _marked(self) -> list[str]:
        """Event ids marked pending; marks whose picture is gone are removed."""
        found = []
        for entry in os.scandir(self.store.dir):
            if not entry.name.endswith(PENDING):
                continue
            event_id = entry.name[: -len(PENDING)]
            try:
                has_picture = self.store.path(event_id).is_file()
            except ValueError:
                has_picture = False
            if has_picture:
                found.append(event_id)
            else:
                Path(entry.path).unlink(missing_ok=True)
        return found

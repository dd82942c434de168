"""The drain's window, kept full by whichever thread frees a slot of it.

The store thread reads the next rows of a backlog from the outbox and queues them here, ready
(``offer``). Each PUBACK of a window row arrives on paho's network thread, which sends the next
ready row itself at once (``on_puback``), as paho's own queue does for a bare publish loop: no
other thread is woken per message, and the GIL is not handed over per message. The store thread
sends only when the window has free slots and no PUBACK is coming to fill them (``kick``: the
start of a drain, a backlog that ran dry and was offered again).

Alarms never come here: the store thread publishes them at once, outside the window, and paho
has no in-flight limit of its own that they could wait behind.

Thread-safe. The lock is never held while publishing: paho calls ``on_puback`` holding its own
lock, and the store thread's publish takes that lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from gateway.outbox import Row

# (mid, row, time.monotonic() when published): for the store thread's bookkeeping
Sent = tuple[int, Row, float]


class SendAhead:
    def __init__(self, window: int, depth: int) -> None:
        """``window``: non-alarm rows awaiting their PUBACK at most. ``depth``: rows kept ready
        behind them, so paho's thread always has the next one while the store thread reads."""
        self.window = window
        self.depth = depth
        self._publish: Callable[[Row], int] | None = None
        self._lock = threading.Lock()
        self._ready: deque[Row] = deque()
        self._mids: set[int] = set()  # window rows published, PUBACK not yet come
        self._publishing = 0  # rows taken from ready, being published outside the lock
        self._kicking = 0  # store-thread sends in progress
        # A store-thread send learns its mid only once publish() returns; paho's thread may
        # have its PUBACK by then. Those PUBACKs are noted here while a kick is in progress.
        self._early: set[int] = set()
        self._sent: deque[Sent] = deque()

    def attach(self, publish: Callable[[Row], int]) -> None:
        """``publish(row)`` hands the row to paho and returns its mid."""
        self._publish = publish

    # -- the store thread ------------------------------------------------------------------

    def room(self) -> int:
        """How many more rows may be queued ready."""
        return self.depth - len(self._ready)

    def offer(self, rows: list[Row]) -> None:
        with self._lock:
            self._ready.extend(rows)

    def kick(self) -> None:
        """Fill the window's free slots now (nothing in flight may be left to do it)."""
        self._fill(by_store=True)

    def take_sent(self) -> list[Sent]:
        """What was published since the last call, in order."""
        sent = self._sent
        return [sent.popleft() for _ in range(len(sent))]

    def withdraw(self) -> list[Row]:
        """Take back every row not yet published (their seqs are to be looked at again)."""
        with self._lock:
            rows = list(self._ready)
            self._ready.clear()
        return rows

    def release(self, mids: list[int]) -> None:
        """Given up on: their PUBACK is no longer awaited, their slots are free."""
        with self._lock:
            self._mids.difference_update(mids)

    @property
    def in_window(self) -> int:
        return len(self._mids) + self._publishing

    @property
    def ready(self) -> int:
        return len(self._ready)

    # -- paho's network thread ---------------------------------------------------------------

    def on_puback(self, mid: int) -> None:
        self._fill(by_store=False, acked=mid)

    # -- either thread ------------------------------------------------------------------------

    def _fill(self, *, by_store: bool, acked: int | None = None) -> None:
        publish = self._publish
        if publish is None:
            return
        with self._lock:
            if acked is not None:
                if acked not in self._mids:
                    if self._kicking:
                        self._early.add(acked)
                    return  # not a window row (an alarm, health, status), or not yet known
                self._mids.discard(acked)
            free = self.window - len(self._mids) - self._publishing
            if free <= 0 or not self._ready:
                return
            rows = [self._ready.popleft() for _ in range(min(free, len(self._ready)))]
            self._publishing += len(rows)
            if by_store:
                self._kicking += 1
        sent: list[Sent] = []
        try:
            for row in rows:
                sent.append((publish(row), row, time.monotonic()))
        finally:
            with self._lock:
                self._publishing -= len(rows)
                self._ready.extendleft(reversed(rows[len(sent) :]))  # not published: first again
                for mid, _, _ in sent:
                    if by_store and mid in self._early:
                        self._early.discard(mid)  # its PUBACK came already: its slot is free
                    else:
                        self._mids.add(mid)
                if by_store:
                    self._kicking -= 1
                    if not self._kicking:
                        self._early.clear()
                self._sent.extend(sent)

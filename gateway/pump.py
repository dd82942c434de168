"""What goes out next, in drain order: the store thread's half of publishing.

* Alarms (priority 0) go out as soon as they are given their seq, while their commit is in
  flight (``publish_alarms_first``), or else as soon as they are committed, outside any window.
* Everything else goes out through the window of ``gateway.send_ahead``: the pump reads the next
  rows of the outbox once half a window of those queued ready are gone, and paho's thread sends
  them on each PUBACK.

The cursors say how far each kind has been read; a new, requeued or retried row moves them back
(``rewind``). Owned by the store thread (gateway/dispatcher.py); not thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from core.events import Event, Priority
from core.topics import HubTopics
from gateway.guarded_outbox import GuardedOutbox
from gateway.in_flight import InFlight
from gateway.outbox import Outbox, Row
from gateway.send_ahead import SendAhead

_ALARM = int(Priority.ALARM)
_START = (-1, -1)
ALARMS_PER_TURN = 1000
# The plain file (benchmarks, tests of the drain) or the guarded one the hub uses.
AnyOutbox = Outbox | GuardedOutbox
Batches = list[tuple[list[Event], Future[list[Event]]]]


class Publisher(Protocol):
    connected: bool

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> int: ...

    def publish_json(self, topic: str, obj: Any, *, retain: bool = False, qos: int = 1) -> int: ...


class Counts(Protocol):
    published: int


class Pump:
    def __init__(
        self, outbox: AnyOutbox, topics: HubTopics, inflight: InFlight, window: int, stats: Counts
    ) -> None:
        self.stats = stats  # counts ``published``
        self.outbox = outbox
        self.topics = topics
        self.inflight = inflight
        self.window = window
        # Two windows' worth of rows ready, read again once half a window of them are gone:
        # measured best of the depths and refills tried (BENCHMARKS.md, drain throughput).
        self.refill = max(1, window // 2)
        self.send_ahead = SendAhead(window, depth=2 * window)
        self.uplink: Publisher | None = None
        self._topics: dict[str, str] = {}  # kind -> event topic, built once
        self._alarm_cursor = -1
        self._alarms_due = True  # an alarm may be pending past the alarm cursor
        self._other_cursor = _START
        self._rewound = False  # the cursor moved back: rows queued ready may be out of order

    def attach(self, uplink: Publisher) -> None:
        self.uplink = uplink
        self.send_ahead.attach(self._publish_row)

    def _publish_row(self, row: Row) -> int:
        """Hand one row to paho (the store thread, or paho's own thread from a PUBACK)."""
        topic = self._topics.get(row.kind)
        if topic is None:
            topic = self._topics[row.kind] = self.topics.event(row.kind)
        assert self.uplink is not None
        return self.uplink.publish(topic, row.payload)

    # -- the cursors --------------------------------------------------------------------------

    def rewind(self, priority: int, seq: int) -> None:
        """Look at (priority, seq) again: a new, requeued or retried row."""
        if priority == _ALARM:
            self._alarm_cursor = min(self._alarm_cursor, seq - 1)
            self._alarms_due = True
        elif (priority, seq - 1) < self._other_cursor:
            self._other_cursor = (priority, seq - 1)
            self._rewound = True

    def restart(self) -> None:
        """Look at every pending row again (a fresh file, marks that could not be written)."""
        self._alarm_cursor, self._other_cursor = -1, _START
        self._alarms_due = True

    # -- publishing ----------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Published and not yet PUBACKed, as far as the store thread can tell."""
        return max(len(self.inflight), self.send_ahead.in_window)

    def note_sent(self) -> None:
        """What paho's thread published from the window since the last call."""
        sent = self.send_ahead.take_sent()
        for mid, row, when in sent:
            self.inflight.sent(mid, row.seq, row.priority, when)
        self.stats.published += len(sent)

    def publish_alarms_first(self, batches: Batches) -> None:
        """Publish the new alarms now, while their commit is still to come (its fsync is most
        of an alarm's time in the hub). Their seqs are durably reserved first: a crash before
        the commit leaves them "reserved, never used", never another event's. The submitter
        still learns the event is accepted only once it is committed (docs/operations.md).
        The events of ``batches`` are replaced by the same with their seqs."""
        uplink = self.uplink
        flat = [e for events, _ in batches for e in events]
        if uplink is None or not any(e.priority == Priority.ALARM for e in flat):
            return
        numbered = self.outbox.number(flat)  # every new event, in order, so seqs stay in order
        if numbered is None:
            return
        _regroup(batches, numbered)
        for event in numbered:
            if event.priority == Priority.ALARM:
                mid = uplink.publish(self.topics.event(event.kind), self.outbox.payload(event))
                self.inflight.sent(mid, event.seq, _ALARM, time.monotonic())
                self.stats.published += 1

    def alarms(self) -> None:
        """Committed alarms not yet out: at once, outside the window."""
        if self.uplink is None or not self._alarms_due:
            return
        rows = self.outbox.pending_alarms(self._alarm_cursor, ALARMS_PER_TURN)
        self._alarms_due = len(rows) == ALARMS_PER_TURN
        for row in rows:
            self._alarm_cursor = row.seq
            if not self.inflight.is_out(row.seq):
                mid = self._publish_row(row)
                self.inflight.sent(mid, row.seq, row.priority, time.monotonic())
                self.stats.published += 1

    def backlog(self) -> None:
        """Keep the rows queued ready topped up, and the window full."""
        if self.uplink is None:
            return
        ahead = self.send_ahead
        if self._rewound:
            # Something that goes before the rows queued ready (a new trouble report, a row
            # sent again): take them back; they are read again in drain order.
            self._rewound = False
            self.inflight.unqueue(row.seq for row in ahead.withdraw())
        room = ahead.room()
        if room >= self.refill or (not ahead.ready and not ahead.in_window):
            offered: list[Row] = []
            while room > 0:
                rows = self.outbox.pending_after(*self._other_cursor, room)
                if not rows:
                    break
                for row in rows:
                    self._other_cursor = (row.priority, row.seq)
                    if not self.inflight.is_out(row.seq):
                        self.inflight.queued(row.seq)
                        offered.append(row)
                        room -= 1
            if offered:
                ahead.offer(offered)
        while ahead.ready and ahead.in_window < self.window:
            # Free slots and maybe no PUBACK coming to fill them. Again if every PUBACK of
            # the kick came before the kick knew its mid (a publisher that PUBACKs at once).
            before = ahead.ready
            ahead.kick()
            if ahead.ready == before:
                break

    def drained(self) -> bool:
        return (
            not self.inflight
            and not self.send_ahead.in_window
            and not self.outbox.pending_alarms(-1, 1)
            and not self.outbox.pending_after(-1, -1, 1)
        )


def _regroup(batches: Batches, numbered: Sequence[Event]) -> None:
    start = 0
    for i, (events, fut) in enumerate(batches):
        batches[i] = (list(numbered[start : start + len(events)]), fut)
        start += len(events)

"""One simulated hub's account of its events: what it made, what is still unreceipted, what the
receivers receipted and how long that took.

Kept small, because a fleet holds thousands of these for the whole run: every id the hub made
(in seq order, which is also id order: UUIDv7 ids from one generator only grow, so an id is
found again by bisection), one byte per seq counting its receipts, and the events still
waiting for a receipt with their payload. Latencies go into a ``LatencyBook`` shared by the
hubs of one loop (they all run on its thread).
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field


@dataclass(slots=True)
class Pending:
    """An event kept until a receipt names it (the hub's outbox, in memory)."""

    seq: int
    priority: int
    kind: str
    payload: bytes
    first_sent: float = 0.0  # time.monotonic() of the first publish; 0.0 while never published
    last_sent: float = 0.0
    mid: int = 0  # paho's message id of the latest publish
    acked: bool = False  # the broker PUBACKed the latest publish


@dataclass
class LatencyBook:
    """Publish -> receipt times (ms) by priority, for the hubs of one loop."""

    by_priority: dict[int, array[float]] = field(default_factory=dict)

    def add(self, priority: int, ms: float) -> None:
        values = self.by_priority.get(priority)
        if values is None:
            values = self.by_priority[priority] = array("d")
        values.append(ms)


class HubLedger:
    __slots__ = ("ids", "receipts", "pending", "mids", "latency", "duplicates", "unknown")

    def __init__(self, latency: LatencyBook) -> None:
        self.ids: list[str] = []  # index seq - 1
        self.receipts = bytearray()  # receipts seen per seq (capped at 255)
        self.pending: dict[str, Pending] = {}
        self.mids: dict[int, str] = {}  # paho mid -> event id, until its PUBACK
        self.latency = latency
        self.duplicates = 0  # receipts naming an event already receipted
        self.unknown = 0  # receipts naming an id this hub never made (an earlier run's)

    @property
    def last_seq(self) -> int:
        return len(self.ids)

    def made(self, event_id: str, priority: int, kind: str, payload: bytes) -> Pending:
        """Record a new event; its seq is the next one."""
        self.ids.append(event_id)
        self.receipts.append(0)
        pending = Pending(len(self.ids), priority, kind, payload)
        self.pending[event_id] = pending
        return pending

    def published(self, event_id: str, pending: Pending, mid: int, now: float) -> None:
        if not pending.first_sent:
            pending.first_sent = now
        pending.last_sent = now
        pending.acked = False
        pending.mid = mid
        self.mids[mid] = event_id

    def puback(self, mid: int, accepted: bool) -> Pending | None:
        """The broker's PUBACK for ``mid``; the event it was, if still unreceipted."""
        event_id = self.mids.pop(mid, None)
        if event_id is None:
            return None  # a health, status, ping or result message, or already receipted
        pending = self.pending.get(event_id)
        if pending is not None and pending.mid == mid:
            pending.acked = accepted
        return pending

    def receipted(self, ids: list[str], now: float) -> int:
        """Apply a genuine receipt; how many of its ids were receipted for the first time."""
        new = 0
        for event_id in ids:
            pending = self.pending.pop(event_id, None)
            if pending is not None:
                self.mids.pop(pending.mid, None)
                self.receipts[pending.seq - 1] = 1
                new += 1
                if pending.first_sent:
                    self.latency.add(pending.priority, (now - pending.first_sent) * 1000.0)
                continue
            seq = self.seq_of(event_id)
            if seq is None:
                self.unknown += 1
            else:
                self.duplicates += 1
                count = self.receipts[seq - 1]
                self.receipts[seq - 1] = min(255, count + 1)
        return new

    def seq_of(self, event_id: str) -> int | None:
        at = bisect.bisect_left(self.ids, event_id)
        if at < len(self.ids) and self.ids[at] == event_id:
            return at + 1
        return None

    def overdue(self, now: float, timeout_s: float) -> list[tuple[str, Pending]]:
        """Sent, and no receipt within ``timeout_s`` of the last send."""
        return [
            (i, p)
            for i, p in self.pending.items()
            if p.last_sent and now - p.last_sent >= timeout_s
        ]

    def gaps(self) -> list[int]:
        """Seqs below the highest receipted one that no receipt named (what a receiver would
        see as holes in the hub's sequence)."""
        receipts = self.receipts
        top = len(receipts)
        while top and not receipts[top - 1]:
            top -= 1
        return [n + 1 for n in range(top) if not receipts[n]]

    def missing_from(self, stored: set[str]) -> list[tuple[int, str]]:
        """(seq, id) of every event this hub made that ``stored`` lacks."""
        return [(n + 1, i) for n, i in enumerate(self.ids) if i not in stored]

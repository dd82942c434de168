"""Events held in memory while the outbox's disk refuses writes (gateway/guarded_outbox.py).

Each has its seq and its payload as it will be written, so what is published from memory is
byte for byte what the outbox later stores. A held event leaves when it is written to disk or
delivered. The store thread owns an instance; nothing here locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from core.events import Priority
from gateway.outbox import DELIVERED, PENDING, SENT, Row

_ALARM = int(Priority.ALARM)


@dataclass
class Held:
    seq: int
    id: str
    kind: str
    priority: int
    payload: bytes
    state: int = PENDING
    sent_at: float = 0.0

    def row(self) -> Row:
        return Row(self.seq, self.kind, self.priority, self.payload)

    def stored(self) -> tuple[int, str, str, int, int, bytes]:
        """The row as ``Outbox.insert_rows`` takes it."""
        return (self.seq, self.id, self.kind, self.priority, self.state, self.payload)


class HeldEvents:
    def __init__(self) -> None:
        self._by_seq: dict[int, Held] = {}
        self._by_id: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_seq)

    def __contains__(self, seq: object) -> bool:
        return seq in self._by_seq

    def __iter__(self) -> Iterator[Held]:
        return iter(self._by_seq.values())

    def seq_of(self, event_id: str) -> int | None:
        return self._by_id.get(event_id)

    def state_of(self, event_id: str) -> int | None:
        seq = self._by_id.get(event_id)
        return None if seq is None else self._by_seq[seq].state

    def add(self, held: Held) -> None:
        self._by_seq[held.seq] = held
        self._by_id[held.id] = held.seq

    def clear(self) -> None:
        self._by_seq.clear()
        self._by_id.clear()

    def mark(self, seqs: Sequence[int], state: int) -> list[int]:
        """Apply sent or delivered to the held ones among ``seqs``; returns the others."""
        if not self._by_seq:
            return list(seqs)
        rest = []
        for seq in seqs:
            held = self._by_seq.get(seq)
            if held is None:
                rest.append(seq)
            elif state == DELIVERED:
                self._drop(held)
            else:
                held.state, held.sent_at = state, time.time()
        return rest

    def deliver_ids(self, ids: Iterable[str]) -> tuple[int, list[str]]:
        """Receipts: (how many were held, the ids that are not)."""
        done, rest = 0, []
        for event_id in ids:
            seq = self._by_id.get(event_id)
            if seq is None:
                rest.append(event_id)
            else:
                self._drop(self._by_seq[seq])
                done += 1
        return done, rest

    def _drop(self, held: Held) -> None:
        del self._by_seq[held.seq]
        self._by_id.pop(held.id, None)

    def requeue(self, which: Callable[[Held], bool]) -> list[tuple[int, int]]:
        """Sent ones that ``which`` picks go back to pending; their (priority, seq)."""
        back: list[tuple[int, int]] = []
        for held in self._by_seq.values():
            if held.state == SENT and which(held):
                held.state = PENDING
                back.append((held.priority, held.seq))
        return back

    def merge_alarms(self, rows: list[Row], after_seq: int, limit: int) -> list[Row]:
        """Stored pending alarm rows and held ones, in seq order."""
        if not self._by_seq:
            return rows
        rows = rows + [
            h.row()
            for h in self._by_seq.values()
            if h.state == PENDING and h.priority == _ALARM and h.seq > after_seq
        ]
        return sorted(rows, key=lambda r: r.seq)[:limit]

    def merge_after(self, rows: list[Row], priority: int, seq: int, limit: int) -> list[Row]:
        """Stored pending non-alarm rows and held ones after (priority, seq), in drain order."""
        if not self._by_seq:
            return rows
        rows = rows + [
            h.row()
            for h in self._by_seq.values()
            if h.state == PENDING and h.priority != _ALARM and (h.priority, h.seq) > (priority, seq)
        ]
        return sorted(rows, key=lambda r: (r.priority, r.seq))[:limit]

    def add_counts(self, out: dict[str, int]) -> dict[str, int]:
        """Add the held events to ``Outbox.counts()``-shaped counts."""
        for held in self._by_seq.values():
            state = "pending" if held.state == PENDING else "sent"
            out[state] = out.get(state, 0) + 1
            name = f"undelivered_{Priority(held.priority).name.lower()}"
            out[name] = out.get(name, 0) + 1
        if self._by_seq:
            out["in_memory"] = len(self._by_seq)
        return out

"""What the store thread has handed the uplink and not yet seen settled, by MQTT mid.

A row is *out* (not read again by the pump) from when it is queued ready to send
(gateway/send_ahead.py) or published, until its PUBACK is marked in the outbox; it is *in
flight*, by its mid, from its publish until its PUBACK. Owned by the store thread; not
thread-safe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.events import Priority

ALARM = int(Priority.ALARM)


@dataclass
class Entry:
    seq: int
    priority: int
    since: float  # time.monotonic() when published (or when its connection came back)


class InFlight:
    def __init__(self) -> None:
        self._by_mid: dict[int, Entry] = {}
        self._out: set[int] = set()  # seqs published and not yet marked PUBACKed in the outbox

    def __len__(self) -> int:
        return len(self._by_mid)

    def is_out(self, seq: int) -> bool:
        return seq in self._out

    def queued(self, seq: int) -> None:
        """Queued ready to send: out already, in flight once published."""
        self._out.add(seq)

    def unqueue(self, seqs: Iterable[int]) -> None:
        """Taken back before they were published."""
        self._out.difference_update(seqs)

    def sent(self, mid: int, seq: int, priority: int, now: float) -> None:
        self._by_mid[mid] = Entry(seq, priority, now)
        self._out.add(seq)

    def acked(self, mid: int) -> Entry | None:
        """Its PUBACK came: out of the window, still out until ``marked``. None if not ours
        (status and health messages) or already given up on."""
        return self._by_mid.pop(mid, None)

    def marked(self, seqs: Iterable[int]) -> None:
        """Their PUBACKs are in the outbox: the outbox's own state says what they are now."""
        self._out.difference_update(seqs)

    def give_up(self, entry: Entry) -> None:
        """An acked-but-refused or abandoned row: the pump may send it again."""
        self._out.discard(entry.seq)

    def take(self, mid: int) -> Entry:
        """Abandon one in flight (it will be sent again)."""
        entry = self._by_mid.pop(mid)
        self._out.discard(entry.seq)
        return entry

    def take_all(self) -> list[tuple[int, Entry]]:
        return [(mid, self.take(mid)) for mid in list(self._by_mid)]

    def take_older(self, now: float, age_s: float) -> list[tuple[int, Entry]]:
        old = [m for m, e in self._by_mid.items() if now - e.since > age_s]
        return [(m, self.take(m)) for m in old]

    def restart_clocks(self, now: float) -> None:
        """paho re-sends what it still holds after a reconnect: give those their full time."""
        for entry in self._by_mid.values():
            entry.since = now

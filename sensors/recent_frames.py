"""The frames a bus has seen lately: which arrivals are copies, and the ACKs each frame is owed.

A node sends a frame again until it hears the ACK, so the same ``(node, boot, seq)`` key comes
in more than once. ``sensors/serial_bus.py`` reports a frame once and ACKs every copy, but only
after all the frame's events are committed. This ledger is what lets it:

* a copy (same key, same content) of a committed frame is ACKed at once and not reported;
* a copy of a frame still waiting for its commit is owed an ACK when that commits;
* the same key with other content, or a copy long after the first (``window_s``), is a node that
  reused its numbers (it restarted and lost count): a new message, reported;
* a frame whose commit failed is forgotten, so its next copy is handled as new.

The bus's reader thread classifies and adds; the commit callbacks (the hub's store thread)
mark commits and failures. One lock covers the ledger and its entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any

RECENT_KEYS = 2048
MAX_WAITING_ACKS = 8

Key = tuple[int, int, int]  # node, boot, seq


class Seen(Enum):
    NEW = "new"  # not seen lately (or forgotten after a failed commit)
    REUSED = "reused"  # a known key for another message: new, and worth a warning
    COPY = "copy"  # a copy of a committed frame: ACK it now
    COPY_PENDING = "copy-pending"  # a copy of a frame not yet committed: ACKed with it


@dataclass
class Recent:
    """A frame key seen lately: its content, and whether its events are committed."""

    content: tuple[Any, ...]
    first_seen: float
    committed: bool = False
    failed: bool = False
    remaining: int = 0  # events still waiting for their commit
    waiting: int = 0  # copies received meanwhile, each owed an ACK


class RecentFrames:
    """The last ``keep`` frame keys of one bus (oldest dropped first)."""

    def __init__(self, *, window_s: float, keep: int = RECENT_KEYS) -> None:
        self.window_s = window_s
        self.keep = keep
        self._lock = threading.Lock()
        self._recent: OrderedDict[Key, Recent] = OrderedDict()

    def classify(self, key: Key, content: tuple[Any, ...], now: float) -> Seen:
        """What a frame arriving now is; a pending copy is counted as owed its ACK."""
        with self._lock:
            recent = self._recent.get(key)
            if recent is None or recent.failed:
                return Seen.NEW
            if recent.content != content:
                return Seen.REUSED
            if recent.committed:
                # A copy long after the first is no re-send: the node reused its numbers.
                return Seen.REUSED if now - recent.first_seen > self.window_s else Seen.COPY
            recent.waiting = min(recent.waiting + 1, MAX_WAITING_ACKS)
            return Seen.COPY_PENDING

    def add(self, key: Key, content: tuple[Any, ...], now: float, events: int) -> Recent:
        """A new frame whose ``events`` are being committed (none: committed already)."""
        entry = Recent(content=content, first_seen=now, remaining=events, committed=not events)
        with self._lock:
            self._recent[key] = entry
            self._recent.move_to_end(key)
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        return entry

    def committed(self, entry: Recent) -> int:
        """One of the frame's events is committed; returns the ACKs owed now (0: not yet, or
        the frame failed), one for the frame and one for each copy that came meanwhile."""
        with self._lock:
            if entry.failed:
                return 0
            entry.remaining -= 1
            if entry.remaining:
                return 0
            entry.committed = True
            count, entry.waiting = 1 + entry.waiting, 0
            return count

    def forget(self, key: Key, entry: Recent) -> bool:
        """The frame's events will not all commit: its next copy is new. False if known."""
        with self._lock:
            if entry.failed:
                return False
            entry.failed = True
            if self._recent.get(key) is entry:
                del self._recent[key]
            return True

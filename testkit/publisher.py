"""A publisher that records what it is handed and acknowledges only when told.

It stands where the uplink stands for the dispatcher (``publish``/``publish_json`` returning a
message id, ``connected``), without a network: a test sees every message in the order it was
handed over, decides which PUBACKs come back and when (``ack``), or lets each come back at once
(``auto_ack``). A PUBACK goes to ``on_published(mid, accepted)``, as the uplink reports one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testkit.waiting import Collected


@dataclass(frozen=True)
class Published:
    mid: int
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def kind(self) -> str | None:
        """The event kind for a message on an event topic (``.../event/<kind>``), else None."""
        head, _, kind = self.topic.rpartition("/")
        return kind if head.endswith("/event") else None


class RecordingPublisher:
    def __init__(
        self,
        on_published: Callable[[int, bool], None] | None = None,
        *,
        auto_ack: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.on_published = on_published
        self.auto_ack = auto_ack
        self.timeout = timeout
        self.connected = True
        self._published: Collected[Published] = Collected(_describe, timeout)
        self._lock = threading.Lock()  # for the mids and what waits for a PUBACK
        self._unacked: dict[int, Published] = {}
        self._next_mid = 1

    # -- the publisher's side (the dispatcher's thread) ------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> int:
        with self._lock:
            message = Published(self._next_mid, topic, bytes(payload), retain, qos)
            self._next_mid += 1
            if not self.auto_ack:
                self._unacked[message.mid] = message
        self._published.append(message)
        if self.auto_ack:
            self._report(message.mid, True)
        return message.mid

    def publish_json(self, topic: str, obj: Any, *, retain: bool = False, qos: int = 1) -> int:
        payload = json.dumps(obj, separators=(",", ":")).encode()
        return self.publish(topic, payload, retain=retain, qos=qos)

    # -- the test's side ------------------------------------------------------------------

    @property
    def published(self) -> list[Published]:
        return self._published.items()

    def events(self) -> list[Published]:
        """The messages on event topics, in the order they were handed over."""
        return [m for m in self.published if m.kind is not None]

    def unacked(self) -> list[Published]:
        """Handed over and not acknowledged yet, oldest first."""
        with self._lock:
            return list(self._unacked.values())

    def unacked_events(self) -> list[Published]:
        """The event messages among those (not health or status)."""
        return [m for m in self.unacked() if m.kind is not None]

    def ack(self, *messages: Published | int, accepted: bool = True) -> None:
        """The broker's PUBACK for these messages (``accepted=False``: it refused them)."""
        mids = [m.mid if isinstance(m, Published) else m for m in messages]
        with self._lock:
            for mid in mids:
                if self._unacked.pop(mid, None) is None:
                    raise AssertionError(f"message {mid} is not waiting for a PUBACK")
        for mid in mids:
            self._report(mid, accepted)

    def ack_all(self) -> int:
        """PUBACK everything waiting; how many."""
        waiting = self.unacked()
        self.ack(*waiting)
        return len(waiting)

    def wait_for(
        self, predicate: Callable[[list[Published]], bool], timeout: float | None = None
    ) -> list[Published]:
        """Wait until ``predicate(published)`` holds; returns everything handed over so far."""
        return self._published.wait_until(predicate, timeout)

    def wait_for_events(self, count: int, timeout: float | None = None) -> list[Published]:
        """Wait until ``count`` event messages were handed over; returns the event messages."""
        self.wait_for(lambda ms: sum(m.kind is not None for m in ms) >= count, timeout)
        return self.events()

    def _report(self, mid: int, accepted: bool) -> None:
        if self.on_published is not None:
            self.on_published(mid, accepted)


def _describe(message: Published) -> str:
    return f"{message.mid} {message.topic}"

"""UUIDv7 event ids: time-ordered, unique without coordination, sortable as strings."""

import os
import threading
import time
import uuid


class UUID7Generator:
    """RFC 9562 UUIDv7 with a 12-bit counter in rand_a (method 1), so ids made in the same
    millisecond by one process still sort in creation order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def new(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                # Same millisecond, or the clock stepped back: keep ids increasing.
                self._counter += 1
                if self._counter > 0xFFF:
                    self._last_ms += 1
                    self._counter = 0
                ms = self._last_ms
            else:
                self._last_ms = ms
                self._counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
            counter = self._counter
        rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
        return str(uuid.UUID(int=value))


new_event_id = UUID7Generator().new

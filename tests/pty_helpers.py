"""A sensor node's end of a serial line, on a real pseudo-terminal pair."""

from __future__ import annotations

import contextlib
import os
import select
import time
import tty
from typing import Any

from firmware_py import codec


class NodeEnd:
    """A pty pair: the hub opens ``path``; the test writes frames to and reads ACKs from the
    master. The test keeps the slave open too, so the master never sees a hang-up."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo before pyserial configures the port
        self.path = os.ttyname(self.slave)
        self.decoder = codec.Decoder()
        self.received: list[Any] = []

    def send(self, *frames: bytes) -> None:
        os.write(self.master, b"".join(frames))

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if ready:
            self.received.extend(self.decoder.feed(os.read(self.master, 4096)))

    def frames(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Wait until ``count`` frames came back from the hub; returns all received so far."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {count} frame(s) from the hub: {self.received}")
            self._pump(left)
        return list(self.received)

    def quiet(self, seconds: float) -> list[Any]:
        """Listen for ``seconds`` (to show that nothing comes back); returns what came."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._pump(left)
        return list(self.received)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):  # closed already
                os.close(fd)

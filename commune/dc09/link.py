"""One TCP connection to the DC-09 receiver: connect, send a message, read the one reply.

A reply ends at its CR. Reading stops at the CR, after ``MAX_REPLY`` bytes without one (a
hostile or confused peer), at the deadline, or when ``stopping`` is set (looked at every
``SLICE_S``, so ``stop()`` is never held up by a silent peer). Whatever came before the deadline
is returned as it is, for the caller to judge: an unframed ``"NAK"`` has no CR.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from commune.dc09.frame import CR
from commune.dc09.replies import MAX_REPLY

SLICE_S = 0.25


class Link:
    """``connect``, then ``exchange`` as often as wanted; ``close`` at any time."""

    def __init__(self, host: str, port: int, connect_timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Raises ``OSError`` when the receiver cannot be reached."""
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sock = sock

    def exchange(self, wire: bytes, timeout_s: float, stopping: threading.Event) -> bytes:
        """Send ``wire``, return the reply (b"" when none came in ``timeout_s``). Raises
        ``OSError`` when the connection fails or the peer closed it without a word."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        self._discard_stale(sock)
        sock.settimeout(self.connect_timeout_s)
        sock.sendall(wire)
        deadline = time.monotonic() + timeout_s
        got = b""
        while not stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            sock.settimeout(min(left, SLICE_S))
            try:
                chunk = sock.recv(MAX_REPLY)
            except TimeoutError:
                continue
            if not chunk:
                if got:
                    return got
                raise ConnectionResetError("the receiver closed the connection")
            got += chunk
            end = got.find(CR)
            if end >= 0:
                return got[: end + 1]
            if len(got) > MAX_REPLY:
                return got
        return got

    @staticmethod
    def _discard_stale(sock: socket.socket) -> None:
        """Drop what arrived since the last reply (a late or repeated one): it would be taken
        for the answer to the next message."""
        sock.setblocking(False)
        try:
            while sock.recv(MAX_REPLY):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            sock.setblocking(True)

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

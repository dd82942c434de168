"""A TCP proxy on loopback between a client and a broker that can go silent.

A link can die without closing: a dead NAT entry or a black-holed route keeps TCP open while
nothing passes. ``BlackHole`` forwards both ways until told to swallow, then reads and drops
every byte without closing anything.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Any

from testkit.mqtt import HasAddress


class BlackHole:
    """A TCP proxy on 127.0.0.1 in front of ``target``.

    ``swallow()``: from now on every byte, either way and on every connection (those open and
    those accepted later), is read and dropped; nothing is closed. ``heal()``: the swallowed
    connections are reset (their streams lost bytes, and a path that works again answers the
    old connection's packets with a reset) and new ones are forwarded again."""

    def __init__(self, target: HasAddress) -> None:
        self.target = (target.host, target.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self.swallowing = False
        self.generation = 0  # connections older than the last heal are reset
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._spawn(self._accept_loop)

    def swallow(self) -> None:
        self.swallowing = True

    def heal(self) -> None:
        self.generation += 1
        self.swallowing = False

    def close(self) -> None:
        self._closed = True
        for thread in self._threads:
            thread.join(5.0)
        self.listener.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self.listener], [], [], 0.1)
            if not ready:
                continue
            client, _ = self.listener.accept()
            self.accepted += 1
            try:
                upstream = None if self.swallowing else socket.create_connection(self.target)
            except OSError:  # the target is down: the client sees its connection end
                client.close()
                continue
            self._spawn(self._pump, client, upstream, self.generation)

    def _pump(self, client: socket.socket, upstream: socket.socket | None, generation: int) -> None:
        ends = [s for s in (client, upstream) if s is not None]
        swallowed = False
        try:
            while not self._closed:
                if swallowed and self.generation != generation:
                    for s in ends:  # a reset, not a clean close
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                ready, _, _ = select.select(ends, [], [], 0.1)
                if self.swallowing or upstream is None:
                    swallowed = True
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    if not swallowed:
                        other = upstream if end is client else client
                        assert other is not None
                        other.sendall(data)
        except OSError:
            return
        finally:
            for s in ends:
                s.close()

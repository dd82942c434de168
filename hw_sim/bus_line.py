"""The simulated bus cable: one pty pair per bus, and each node's link onto it.

The hub opens the pty's slave as its bus port (``sensors/serial_bus.py`` with pyserial, as it
would a USB adapter); the nodes of ``hw_sim/nodes.py`` write to and read from the master
through their ``NodeLink``. On an RS-485 bus every node hears the others, as on one twisted
pair. A link can be noisy (bit errors at a rate, now and then a truncated frame or a burst of
garbage, in both directions) or deaf (everything the hub sends to its node is dropped). A pty
does not pace bytes at the baud rate: frames arrive as fast as the two processes move them.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import select
import threading
import tty
from dataclasses import dataclass
from typing import Any

from hw_sim.board import SimError

MAX_BER = 0.1
# Per frame (a node's write, a chunk the hub wrote), with a bit error rate ber on the link: a
# truncated frame with probability EVENT_FACTOR * ber, and a garbage burst with the same.
EVENT_FACTOR = 10.0
MAX_EVENT_P = 0.2
MAX_GARBAGE = 8
RX_BUFFER = 4096  # bytes a node's UART holds before it drops what comes in


@dataclass
class LinkStats:
    """What happened on one node's link since start (both directions)."""

    tx_bytes: int = 0  # node -> hub, as written by the firmware
    rx_bytes: int = 0  # hub -> node, as the hub wrote them
    flipped_bits: int = 0
    truncated: int = 0
    garbage: int = 0
    rx_dropped: int = 0  # hub -> node bytes dropped: deaf, or the node's buffer full


class Noise:
    """Bit errors at a rate, truncated frames and garbage bursts on one link. Thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self.ber = 0.0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def set_ber(self, ber: Any) -> None:
        if isinstance(ber, bool) or not isinstance(ber, int | float) or not 0 <= ber <= MAX_BER:
            raise SimError(f"ber must be a bit error rate from 0 to {MAX_BER}, got {ber!r}")
        with self._lock:
            self.ber = float(ber)

    def apply(self, data: bytes, stats: LinkStats) -> bytes:
        """``data`` as it arrives across the link."""
        with self._lock:
            ber, rng = self.ber, self._rng
            if ber <= 0 or not data:
                return data
            out = bytearray(data)
            log_keep = math.log1p(-ber)
            bits = len(out) * 8
            pos = int(math.log(1.0 - rng.random()) / log_keep)  # geometric: bits until a flip
            while pos < bits:
                out[pos >> 3] ^= 0x80 >> (pos & 7)
                stats.flipped_bits += 1
                pos += 1 + int(math.log(1.0 - rng.random()) / log_keep)
            p = min(MAX_EVENT_P, EVENT_FACTOR * ber)
            if len(out) > 1 and rng.random() < p:
                del out[rng.randrange(1, len(out)) :]
                stats.truncated += 1
            if rng.random() < p:
                at = rng.randint(0, len(out))
                out[at:at] = rng.randbytes(rng.randint(1, MAX_GARBAGE))
                stats.garbage += 1
            return bytes(out)


class NodeLink:
    """One node's connection to its bus line: the wire its UART writes to and reads from."""

    def __init__(self, line: BusLine, name: str, seed: int | None = None) -> None:
        self.line = line
        self.name = name
        self.noise = Noise(seed)
        self.stats = LinkStats()
        self.deaf = False  # drop everything the hub sends to this node
        self._rx = bytearray()
        self._lock = threading.Lock()

    # the firmware's side (the node thread), through machine_shim's UART
    def send(self, data: bytes) -> None:
        self.stats.tx_bytes += len(data)
        self.line.transmit(self, self.noise.apply(data, self.stats))

    def waiting(self) -> int:
        return len(self._rx)

    def receive(self, size: int) -> bytes:
        with self._lock:
            data = bytes(self._rx[:size])
            del self._rx[:size]
        return data

    # the line's side (its reader thread, or another node's thread on a shared line)
    def deliver(self, data: bytes) -> None:
        self.stats.rx_bytes += len(data)
        if self.deaf:
            self.stats.rx_dropped += len(data)
            return
        data = self.noise.apply(data, self.stats)
        with self._lock:
            room = RX_BUFFER - len(self._rx)
            if len(data) > room:
                self.stats.rx_dropped += len(data) - room
                data = data[:room]
            self._rx.extend(data)


class BusLine:
    """One pty pair standing in for one bus's cable: the hub opens ``path`` (the slave) as its
    port; the nodes' bytes are written to the master, and what the hub writes is read from the
    master and handed to every node on the line.

    The slave stays open here as well, so that the master never sees a hang-up while the hub
    closes and reopens its port. The master is non-blocking: bytes the hub does not read once
    the pty's buffer is full are lost, as on a UART with nobody listening.
    """

    def __init__(self, name: str, *, rs485: bool = False) -> None:
        self.name = name
        self.rs485 = rs485
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing before the hub configures the port
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.links: list[NodeLink] = []
        self.lost_bytes = 0
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name=f"line-{name}", daemon=True)

    def attach(self, name: str, seed: int | None = None) -> NodeLink:
        link = NodeLink(self, name, seed)
        self.links.append(link)
        return link

    def start(self) -> None:
        self._thread.start()

    def transmit(self, sender: NodeLink, data: bytes) -> None:
        """A node's frame onto the line (the node's thread). On RS-485 the other nodes hear it."""
        with self._write_lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.master, view)
                except (BlockingIOError, OSError):
                    self.lost_bytes += len(view)
                    break
                view = view[written:]
        if self.rs485:
            for link in self.links:
                if link is not sender:
                    link.deliver(data)

    def _read_loop(self) -> None:
        """What the hub writes (ACKs), to every node on the line."""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.master, 4096)
            except BlockingIOError:
                continue
            except (OSError, ValueError):  # closed under us
                if self._stop.wait(0.1):
                    return
                continue
            for link in self.links:
                link.deliver(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

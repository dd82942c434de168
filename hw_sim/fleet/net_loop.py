"""One thread driving many paho clients through one selector: paho's external-loop API.

paho documents it for programs with their own event loop: ``socket()`` to wait on, and
``loop_read()``, ``loop_write()`` and ``loop_misc()`` to call when the socket is readable,
writable, and now and then; the ``on_socket_*`` callbacks say when a socket opens, closes, and
has data to write. A thread per client (``loop_start``) would cost a stack and a wake-up per
hub; here thousands of clients share one thread and one ``epoll``.

Writes are batched: paho's "register write" callback only marks the client, and at the end of
each turn the loop writes every marked client at once (a socket is nearly always writable).
Only a client whose socket is full is then watched for writability. So a publish costs no
``epoll_ctl`` and no extra wake-up.

Everything here runs on the loop's thread except ``call_soon`` (and ``call``), which other
threads use to hand work in; timers and the clients' callbacks run on the loop's thread.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
MISC_EVERY_S = 2.0  # each client's loop_misc (keepalive) runs this often, spread over slices
MISC_SLICES = 10
MAX_WAIT_S = 0.5
READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE


class Driven(Protocol):
    """What the loop drives: a paho client, and its periodic work (paho's ``loop_misc``, when
    the client is not being connected by another thread)."""

    client: Any  # paho.mqtt.client.Client

    def misc(self) -> None: ...


class NetLoop:
    def __init__(self, name: str) -> None:
        self.name = name
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._driven: list[Driven] = []
        self._want_write: dict[int, Driven] = {}  # id(item) -> item: write at the end of the turn
        self._watching_write: set[int] = set()  # id(item) of those registered for EVENT_WRITE
        self._misc_slice = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.turns = 0
        self.errors = 0

    # -- any thread -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop's thread, in the order given (thread-safe)."""
        self._calls.append(fn)
        self._wake()

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the loop's thread; its result (or exception) in the future."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.call_soon(run)
        return fut

    def here(self) -> bool:
        return threading.current_thread() is self._thread

    def _wake(self) -> None:
        # Full: a byte is already waiting; closed: the loop is ending. It wakes either way.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- the loop's thread ----------------------------------------------------------------

    def call_at(self, due: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at ``due`` (time.monotonic()); loop thread only."""
        heapq.heappush(self._timers, (due, next(self._order), fn))

    def add(self, item: Driven) -> None:
        """Drive ``item``'s client: its loop_misc is called in the sweeps from now on."""
        self._driven.append(item)

    def remove(self, item: Driven) -> None:
        self._driven = [d for d in self._driven if d is not item]

    # paho's socket callbacks (the loop's thread, or the connector's: see connector.py)

    def socket_open(self, item: Driven, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, item)

    def socket_close(self, item: Driven, sock: Any) -> None:
        self._want_write.pop(id(item), None)
        self._watching_write.discard(id(item))
        with contextlib.suppress(KeyError, ValueError):  # never registered, or gone already
            self._sel.unregister(sock)

    def register_write(self, item: Driven) -> None:
        self._want_write[id(item)] = item

    def unregister_write(self, item: Driven, sock: Any) -> None:
        self._want_write.pop(id(item), None)
        if id(item) in self._watching_write:
            self._watching_write.discard(id(item))
            with contextlib.suppress(KeyError, ValueError):
                self._sel.modify(sock, selectors.EVENT_READ, item)

    def _run(self) -> None:
        next_misc = time.monotonic()
        while not self._stop.is_set():
            self.turns += 1
            now = time.monotonic()
            wait = min(MAX_WAIT_S, max(0.0, next_misc - now))
            if self._timers:
                wait = min(wait, max(0.0, self._timers[0][0] - now))
            if self._calls or self._want_write:
                wait = 0.0
            try:
                ready = self._sel.select(wait)
            except OSError:
                log.exception("%s: select failed", self.name)
                time.sleep(0.1)
                continue
            for key, events in ready:
                item = key.data
                if item is None:
                    self._drain_wake()
                    continue
                self._guard(self._io, item, events)
            self._run_calls()
            self._run_timers()
            now = time.monotonic()
            if now >= next_misc:
                self._sweep_misc()
                next_misc = now + MISC_EVERY_S / MISC_SLICES
            self._flush_writes()
        self._run_calls()

    def _io(self, item: Driven, events: int) -> None:
        if events & selectors.EVENT_READ:
            item.client.loop_read()
        if events & selectors.EVENT_WRITE and item.client.socket() is not None:
            item.client.loop_write()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_calls(self) -> None:
        calls = self._calls
        for _ in range(len(calls)):
            self._guard(calls.popleft())

    def _run_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, fn = heapq.heappop(timers)
            self._guard(fn)

    def _sweep_misc(self) -> None:
        """One slice of the clients' keepalive work (PINGREQ due, a broker gone quiet)."""
        driven = self._driven
        n = self._misc_slice
        self._misc_slice = (n + 1) % MISC_SLICES
        for item in driven[n::MISC_SLICES]:
            self._guard(item.misc)

    def _flush_writes(self) -> None:
        """Write every client that has data queued; watch for writability only those whose
        socket took less than all of it."""
        while self._want_write:
            pending = list(self._want_write.values())
            self._want_write.clear()
            for item in pending:
                client = item.client
                sock = client.socket()
                if sock is None:
                    continue
                self._guard(client.loop_write)
                if client.want_write() and client.socket() is sock:
                    self._want_write.pop(id(item), None)  # the socket is full: wait for it
                    if id(item) not in self._watching_write:
                        self._watching_write.add(id(item))
                        with contextlib.suppress(KeyError, ValueError):
                            self._sel.modify(sock, READ_WRITE, item)
            # loop_write may have made more to write (a callback that published): go round
            # again, but never for a client already waiting on its socket.
            for other in list(self._want_write.values()):
                if other.client.socket() is None or id(other) in self._watching_write:
                    self._want_write.pop(id(other), None)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        """A fault in one client's work must not end the loop that drives thousands."""
        try:
            fn(*args)
        except Exception:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.exception("%s: error #%d in %r", self.name, self.errors, fn)

    def close(self) -> None:
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

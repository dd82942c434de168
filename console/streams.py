"""Live updates: the desk's change notices, fanned out to every connected browser over SSE.

The desk calls its listeners on its own thread; ``Notices.from_desk`` adds the count of alarms
nobody acknowledged (what makes the browsers sound) and hands the notice to the event loop
with ``call_soon_threadsafe``, where each ``/stream`` client has a bounded queue of its own. A
client too slow to keep up loses its oldest notices and is told to reload what it shows
(``{"type": "changed"}``), never holding up the desk or the other clients.

Each stream starts with a ``hello`` event (the alarm count now), then one ``notice`` event per
change, and a comment every ``PING_S`` so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from commune.db import Db
from console.queries import alarm_count

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
PING_S = 15
END: dict[str, Any] = {"type": "end"}  # put in a client's queue: its stream ends


class Notices:
    def __init__(self, db: Db) -> None:
        self.db = db
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self._unlisten: Callable[[], None] | None = None
        self._ending = False

    def attach(
        self, listen: Callable[[Callable[[dict[str, Any]], None]], Callable[[], None]]
    ) -> None:
        """Start taking the desk's notices (call on the event loop, at startup)."""
        self._loop = asyncio.get_running_loop()
        self._unlisten = listen(self.from_desk)

    def detach(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._loop = None

    def alarms(self) -> int:
        try:
            return alarm_count(self.db)
        except Exception:  # a locked or sick store: the browsers keep the last count
            log.exception("cannot count the open alarms")
            return -1

    def from_desk(self, notice: dict[str, Any]) -> None:
        """The desk's listener (the desk's thread): never raises into the desk."""
        try:
            loop = self._loop
            if loop is None:
                return
            payload = {**notice, "alarms": self.alarms()}
            loop.call_soon_threadsafe(self.publish, payload)
        except RuntimeError:  # the loop has closed: the console is stopping
            pass
        except Exception:
            log.exception("cannot pass on the change notice %r", notice)

    def publish(self, payload: dict[str, Any]) -> None:
        """On the event loop: one notice to every client."""
        for client in list(self._clients):
            if client.qsize() >= QUEUE_SIZE:
                while not client.empty():
                    client.get_nowait()
                client.put_nowait({"type": "changed", "alarms": payload.get("alarms", -1)})
            else:
                client.put_nowait(payload)

    def end_streams(self) -> None:
        """End every open stream (any thread): the web server is stopping, and would
        otherwise wait for each browser to hang up. A browser reconnects by itself."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed already
            loop.call_soon_threadsafe(self._end_all)

    def _end_all(self) -> None:
        self._ending = True
        for client in list(self._clients):
            while not client.empty():
                client.get_nowait()
            client.put_nowait(END)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        client: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE + 1)
        if self._ending:
            client.put_nowait(END)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: asyncio.Queue[dict[str, Any]]) -> None:
        self._clients.discard(client)

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def events(self) -> AsyncIterator[dict[str, str]]:
        """One client's stream, as sse-starlette's event dicts."""
        client = self.subscribe()
        try:
            yield {"event": "hello", "data": json.dumps({"alarms": self.alarms()})}
            while True:
                payload = await client.get()
                if payload is END:
                    return
                yield {"event": "notice", "data": json.dumps(payload, default=str)}
        finally:
            self.unsubscribe(client)

"""What the console benches share: an app served by uvicorn on loopback in a thread (the way
``tuquan console`` serves it), a user logged in through the login form, and a live-stream
(SSE) client that stamps each event with ``time.perf_counter()`` as it arrives."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from console.accounts import Accounts
from console.auth import SESSION_COOKIE
from console.csrf import LOGIN_COOKIE
from console.run import make_server
from testkit.broker import free_port
from testkit.waiting import Collected, wait_until

USER = "bench-officer"
PASSWORD = "bench password, long enough"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Served:
    """``app`` on uvicorn (``console.run.make_server``: same settings as the console) on
    127.0.0.1 and a free port, in a thread of this process."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server = make_server(app, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self) -> Served:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, f"{self.thread.name} to listen")
        return self

    def stop(self, before: Callable[[], None] | None = None) -> None:
        if before is not None:
            before()  # e.g. end the live streams, which uvicorn would otherwise wait for
        self.server.should_exit = True
        self.thread.join(30)


def login(url: str, accounts: Accounts, role: str = "viewer") -> str:
    """Make the user and log in through the form (its CSRF token and cookie); the ``cookie``
    header a browser would then send. (The session cookie is ``Secure``: httpx's own jar would
    not send it over http://127.0.0.1, as a browser on a loopback address does.)"""
    if accounts.get_user(USER) is None:
        accounts.add_user(USER, role, PASSWORD)
    with httpx.Client(base_url=url, timeout=30) as http:
        form = http.get("/login")
        found = CSRF_FIELD.search(form.text)
        if found is None:
            raise RuntimeError("the login page has no CSRF token")
        login_cookie = form.cookies.get(LOGIN_COOKIE)
        http.cookies.clear()
        answer = http.post(
            "/login",
            data={"username": USER, "password": PASSWORD, "csrf_token": found.group(1)},
            headers={"cookie": f"{LOGIN_COOKIE}={login_cookie}"},
        )
        session = answer.cookies.get(SESSION_COOKIE)
        if answer.status_code != 303 or not session:
            raise RuntimeError(f"login refused: {answer.status_code} {answer.text[:200]}")
    return f"{SESSION_COOKIE}={session}"


@dataclass(frozen=True)
class SseEvent:
    at: float  # time.perf_counter() when the blank line that ends the event was read
    event: str
    data: Any


class SseClient:
    """One ``GET`` of an SSE stream with httpx (streaming), read in a thread of its own: every
    event, as a browser's ``EventSource`` dispatches it (at the blank line that ends it)."""

    def __init__(self, url: str, cookie: str = "") -> None:
        self.url = url
        self.headers = {"accept": "text/event-stream", **({"cookie": cookie} if cookie else {})}
        self.events: Collected[SseEvent] = Collected(lambda e: f"{e.event}: {e.data}", 30)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._read, name="sse-client", daemon=True)

    def start(self) -> SseClient:
        self.thread.start()
        self.events.at(0)  # the stream is open once its first event (hello) is in
        return self

    def _read(self) -> None:
        event, data = "message", []
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=None)) as http,
                http.stream("GET", self.url, headers=self.headers) as response,
            ):
                response.raise_for_status()
                for line in response.iter_lines():
                    if line:
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)
                        continue
                    if data:
                        at = time.perf_counter()
                        self.events.append(SseEvent(at, event, json.loads("\n".join(data))))
                    event, data = "message", []
        except BaseException as exc:  # seen by the bench as a missing event, and reported
            self.error = exc

    def notices(self) -> list[SseEvent]:
        return [e for e in self.events.items() if e.event == "notice"]

    def join(self, timeout: float = 30) -> None:
        self.thread.join(timeout)

"""What the console tests share: a small desk over the real store, events stored the way the
receiver stores them, a real uvicorn server on a loopback port, and an HTTP client that keeps
the console's cookies.

``LocalDesk`` is the desk's interface (``commune.desk.Desk``) over the real ``Db``,
``AlertBook``, ``HubBook`` and ``AuditLog`` of one SQLite file: it follows stored events into
alerts when told (``follow``), calls its listeners as the real desk does, and records the
commands it is asked to send (nothing is published: these tests are about the web side).
The browser tests run the real desk.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from commune.alerts import Alert, AlertBook
from commune.audit import AuditLog
from commune.commands import CommandSendError
from commune.config import ReceiverConfig, parse_receiver_config
from commune.db import open_db
from commune.desk import Desk, Listener
from commune.hubs import CommandRecord, ExpectedHub, HubBook
from commune.locations import store_location
from commune.store import EventStore, ReceivedEvent
from console.accounts import Accounts
from console.app import create_app
from console.run import make_server, stop_server
from core.events import KINDS, RESTORE, Event, utc_now_iso
from testkit.broker import free_port
from testkit.waiting import wait_until

COMMUNE = "phuong-test"
PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_config(tmp_path: Path, store: str | None = None, **console: Any) -> ReceiverConfig:
    """A receiver config with two expected hubs (one on the map) and ``[console]`` keys, on
    ``store`` (a PostgreSQL URL) when given."""
    receiver: dict[str, Any] = {"commune": COMMUNE}
    if store is not None:
        receiver["store"] = store
    data = {
        "receiver": receiver,
        "hubs": [
            {
                "id": "cho-1",
                "name": "Chợ An Đông",
                "place": "34 An Dương Vương",
                "latitude": 10.757,
                "longitude": 106.673,
                "contact": "Tổ trưởng A",
            },
            {"id": "truong-2", "name": "Trường tiểu học", "latitude": 10.761, "longitude": 106.679},
        ],
        "console": console,
    }
    return parse_receiver_config(data, base_dir=tmp_path, env={})


class LocalDesk(Desk):
    def __init__(self, data_dir: Path, config: ReceiverConfig) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        location = store_location(config.receiver.store, data_dir)
        self.events_store = EventStore(location)  # makes the events table
        self.db = open_db(location)
        self.audit = AuditLog(self.db)
        self.alerts = AlertBook(self.db, self.audit)
        self.hubs = HubBook(self.db)
        self.hubs.set_expected(
            ExpectedHub(h.id, h.name, h.place, h.latitude, h.longitude, h.contact)
            for h in config.hubs
        )
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.commands_sent: list[CommandRecord] = []
        self.refuse_commands = False
        self._seq = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.db.close()

    def listen(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unlisten() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unlisten

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)

    def notify(self, notice: dict[str, Any]) -> None:
        """Tell every listener, as the desk does from its thread."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(notice)

    def acknowledge(self, alert_id: int, user: str) -> Alert:
        alert = self.alerts.acknowledge(alert_id, user)
        self.notify({"type": "alert", "id": alert_id, "action": "acknowledged"})
        return alert

    def close(self, alert_id: int, user: str, outcome: str, note: str = "") -> Alert:
        alert = self.alerts.close(alert_id, user, outcome, note)
        self.notify({"type": "alert", "id": alert_id, "action": "closed"})
        return alert

    def send_command(
        self,
        hub: str,
        name: str,
        args: Mapping[str, Any],
        operator: str,
        alert_id: int | None = None,
    ) -> CommandRecord:
        if self.refuse_commands:
            raise CommandSendError("no connection to 127.0.0.1:1")
        with self._lock:
            self._seq += 1
            command_id = f"cmd{self._seq:04d}"
        self.hubs.record_command(
            {"id": command_id, "hub": hub, "name": name, "args": dict(args), "operator": operator},
            alert_id,
        )
        self.audit.append(
            operator,
            "command_sent",
            alert_id=alert_id,
            hub=hub,
            detail={"command": name, "id": command_id},
        )
        record = self.hubs.command(command_id)
        assert record is not None
        self.commands_sent.append(record)
        self.notify({"type": "command", "id": command_id})
        return record

    def answer(self, command_id: str, result: dict[str, Any]) -> None:
        """The hub's cmd_result for a command, as the desk records it from MQTT."""
        record = self.hubs.command(command_id)
        assert record is not None
        self.hubs.record_result(record.hub, {"command_id": command_id, **result})
        self.notify({"type": "command", "id": command_id})

    # -- events, as the receiver stores them --------------------------------------------

    def store(
        self,
        hub: str,
        kind: str,
        zone: str = "panic-1",
        *,
        restore: bool = False,
        data: dict[str, Any] | None = None,
        received_at: str | None = None,
    ) -> ReceivedEvent:
        with self._lock:
            self._seq += 1
            seq = self._seq
        event = Event(
            kind=kind,
            zone=zone,
            source=zone,
            qualifier=RESTORE if restore else "E",
            data=data or {},
        )
        received = ReceivedEvent.from_event(
            replace(event, seq=seq),
            hub=hub,
            commune=COMMUNE,
            payload=event.to_json(hub).decode(),
            received_at=received_at or utc_now_iso(),
        )
        assert self.events_store.store_batch([received]) == [True]
        self.hubs.record_event(hub, kind, received.received_at)
        return received

    def follow(self) -> list[int]:
        """Open/join alerts from the stored events and tell the listeners; the alert ids."""
        changes = self.alerts.follow()
        for change in changes:
            self.notify({"type": "alert", "id": change.alert_id, "action": change.action})
        return [c.alert_id for c in changes]

    def raise_alert(
        self, hub: str = "cho-1", kind: str = "panic", zone: str = "panic-1", **kw: Any
    ) -> Alert:
        assert kind in KINDS
        self.store(hub, kind, zone, **kw)
        ids = self.follow()
        alert = self.alerts.get(ids[-1])
        assert alert is not None
        return alert


class LiveConsole:
    """The console app on a real uvicorn server on 127.0.0.1 and a free port."""

    def __init__(self, desk: Desk, config: ReceiverConfig, data_dir: Path) -> None:
        self.desk = desk
        self.app = create_app(desk, config, data_dir)
        self.accounts: Accounts = self.app.state.console.accounts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.app, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> LiveConsole:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the console to listen")
        return self

    def stop(self) -> None:
        stop_server(self.server, self.app)
        self.thread.join(30)

    def client(self) -> Browser:
        return Browser(self.url)


class Browser:
    """An HTTP client that keeps the console's cookies as a browser on a secure context does:
    httpx's cookie jar would not send a ``Secure`` cookie over http://127.0.0.1."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.cookies and "cookie" not in {k.lower() for k in headers}:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers=headers, **kw)
        self.http.cookies.clear()
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or value in ('""', ""):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def csrf(self, path: str = "/") -> str:
        """The CSRF token of the forms on ``path``."""
        found = CSRF_FIELD.search(self.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf("/login")
        return self.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token, "next": "/"},
        )


def location_path(response: httpx.Response) -> str:
    return urlsplit(response.headers["location"]).path


@contextmanager
def live_console(
    tmp_path: Path, store: str | None = None, **console: Any
) -> Iterator[tuple[LiveConsole, LocalDesk]]:
    """The web console over a desk double, on a SQLite file or on ``store``."""
    config = console_config(tmp_path, store, **console)
    desk = LocalDesk(tmp_path / "data", config)
    live = LiveConsole(desk, config, tmp_path / "data").start()
    try:
        yield live, desk
    finally:
        live.stop()
        desk.stop()


def make_users(accounts: Accounts) -> None:
    for name, role in (("viewer1", "viewer"), ("op1", "operator"), ("admin1", "admin")):
        accounts.add_user(name, role, PASSWORD)


def store_param(request: pytest.FixtureRequest) -> str | None:
    """A console fixture's store for ``params=STORES``: None (SQLite) or a PostgreSQL URL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return None


STORES = ["sqlite", "postgresql"]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    wait_until(predicate, timeout, what)

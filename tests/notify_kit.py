"""What the notification tests share: the console's store on a real SQLite file, alerts opened
from stored events, a receiver config, and a real HTTP endpoint on loopback."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from commune.alerts import Alert, AlertBook
from commune.audit import AuditLog, AuditRecord
from commune.config import ReceiverConfig, parse_receiver_config
from commune.db import Db
from commune.hubs import ExpectedHub, HubBook
from commune.notify.queue import NotificationQueue
from commune.store import EventStore, ReceivedEvent
from core.events import RESTORE, Event, utc_now_iso
from testkit.broker import free_port
from testkit.disks import fill, small_disk  # noqa: F401 - the tests import them from here
from testkit.waiting import Collected

COMMUNE = "phuong-1"
WEBHOOK_SECRET = "webhook-secret-5521"
ZALO_SECRET = "zalo-app-secret-8830"
ENV = {"TUQUAN_WEBHOOK_SECRET": WEBHOOK_SECRET, "TUQUAN_ZALO_SECRET": ZALO_SECRET}


# -- the store --------------------------------------------------------------------------------


@dataclass
class Store:
    """The console's parts on one SQLite file, as the desk builds them."""

    path: Path
    db: Db = field(init=False)
    audit: AuditLog = field(init=False)
    alerts: AlertBook = field(init=False)
    hubs: HubBook = field(init=False)
    queue: NotificationQueue = field(init=False)
    _seq: int = 0

    def __post_init__(self) -> None:
        EventStore(self.path).close()  # the receiver's tables, as `tuquan receive` makes them
        self.db = Db(self.path)
        self.audit = AuditLog(self.db)
        self.alerts = AlertBook(self.db, self.audit)
        self.hubs = HubBook(self.db)
        self.queue = NotificationQueue(self.db, self.audit)

    def store_event(self, hub: str, kind: str, qualifier: str = "E") -> None:
        self._seq += 1
        event = dataclasses.replace(
            Event(kind=kind, zone="gate", source=f"{kind}-1", qualifier=qualifier), seq=self._seq
        )
        item = ReceivedEvent.from_event(
            event,
            hub=hub,
            commune=COMMUNE,
            payload=event.to_json(hub).decode(),
            received_at=utc_now_iso(),
        )
        with EventStore(self.path) as store:
            assert store.store_batch([item]) == [True]

    def open_alert(self, hub: str = "hub-1", kind: str = "panic") -> Alert:
        """Store one event as the receiver does and follow it into its alert."""
        self.store_event(hub, kind)
        [change] = self.alerts.follow()
        alert = self.alerts.get(change.alert_id)
        assert alert is not None and change.action == "opened"
        return alert

    def restore(self, hub: str, kind: str) -> None:
        self.store_event(hub, kind, RESTORE)
        self.alerts.follow()

    def notify_records(self, notification_id: int) -> list[AuditRecord]:
        """The audit records of one notification's attempts, oldest first."""
        n = self.queue.get(notification_id)
        assert n is not None
        return [
            r
            for r in self.audit.for_alert(n.alert_id)
            if r.action.startswith("notify_") and r.detail.get("notification") == notification_id
        ]

    def close(self) -> None:
        self.db.close()


def opened(alert: Alert) -> float:
    """When the alert opened, in Unix seconds (what ``tick(now=...)`` counts from)."""
    return datetime.fromisoformat(alert.opened_at).timestamp()


def expect_hub(store: Store, hub: str = "cho-an-dong-gate-1") -> str:
    store.hubs.set_expected(
        [
            ExpectedHub(
                hub=hub,
                name="Chợ An Đông, cổng 1",
                place="34 An Dương Vương",
                latitude=10.757,
                longitude=106.673,
                contact="Tổ trưởng Nguyễn Văn A, 0901 234 567",
            )
        ]
    )
    return hub


# -- the config -------------------------------------------------------------------------------


def webhook(url: str, **more: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "url": url,
        "secret_env": "TUQUAN_WEBHOOK_SECRET",
        "retry_max_s": 0.2,
        "timeout_s": 5,
        **more,
    }


def zalo(base: str, recipients: list[str], **more: Any) -> dict[str, Any]:
    return {
        "type": "zalo",
        "app_id": "1234567890",
        "recipients": recipients,
        "secret_env": "TUQUAN_ZALO_SECRET",
        "refresh_token_env": "TUQUAN_ZALO_REFRESH_TOKEN",
        "api_base": base,
        "oauth_base": base,
        "retry_max_s": 0.2,
        "timeout_s": 5,
        **more,
    }


def receiver_config(
    notify: Mapping[str, Mapping[str, Any]],
    steps: list[dict[str, Any]],
    alerts: tuple[str, ...] = ("alarm", "trouble"),
    env: Mapping[str, str] | None = None,
) -> ReceiverConfig:
    """A real receiver config (validated as a file's tables are)."""
    data = {
        "receiver": {"commune": COMMUNE},
        "escalation": {"alerts": list(alerts), "steps": steps},
        "notify": {k: dict(v) for k, v in notify.items()},
    }
    return parse_receiver_config(data, base_dir=Path("."), env={**ENV, **(env or {})})


# -- an HTTP endpoint -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the endpoint answered

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> int:
        return int(self.headers["x-tuquan-delivery"])


Answer = Callable[["Request"], tuple[int, Any]]


class Endpoint:
    """A real HTTP server on loopback (``http.server`` in a thread). ``answer`` decides each
    reply (status, JSON body) from the request; every request is kept, in arrival order."""

    def __init__(self, answer: Answer | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.answer: Answer = answer or (lambda request: (200, {"ok": True}))
        self.requests: Collected[Request] = Collected(
            lambda r: f"{r.status} {r.path} {r.headers.get('x-tuquan-delivery', '')}",
            timeout=30,
        )
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Request(self.path, headers, body, 0)
                status, reply = endpoint.answer(seen)
                data = json.dumps(reply).encode()
                endpoint.requests.append(dataclasses.replace(seen, status=status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Endpoint:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""What the DC-09 tests share: pysiaalarm's receiver on a free loopback port (a real,
independent implementation of the receiving side), scripted TCP peers that answer as told
(silent, garbage, DUH...), and events stored in a real receiver store."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysiaalarm import SIAAccount, SIAClient, SIAEvent

from commune.config import parse_receiver_config
from commune.dc09.config import Dc09Config
from commune.dc09.forwarder import Dc09Forwarder
from commune.store import EventStore, ReceivedEvent
from core.events import NEW, RESTORE, Event, utc_now_iso
from testkit.broker import free_port
from testkit.waiting import Collected, WaitTimeout, wait_until

HOST = "127.0.0.1"
KEY = "A1B2C3D4E5F60718"  # 16 hex characters: AES-128, as pysiaalarm takes a key
OTHER_KEY = "0F1E2D3C4B5A6978"
ACCOUNT = "1234"
HUBS = {"cho-an-dong": "1234", "chung-cu-b": "5678"}
WAIT_S = 30.0


# -- the receiver's store ---------------------------------------------------------------------


def received(hub: str, event: Event, commune: str = "phuong-1") -> ReceivedEvent:
    return ReceivedEvent.from_event(
        event,
        hub=hub,
        commune=commune,
        payload=event.to_json(hub).decode(),
        received_at=utc_now_iso(),
    )


def store(path: Path, items: Iterable[tuple[str, Event]]) -> list[Event]:
    """Store ``(hub, event)`` pairs in the receiver's store at ``path``, as the receiver does."""
    pairs = list(items)
    with EventStore(path) as events:
        events.store_batch([received(hub, event) for hub, event in pairs])
    return [event for _, event in pairs]


def alarm_mix(n: int, hubs: Iterable[str] = HUBS) -> list[tuple[str, Event]]:
    """``n`` events spread over the hubs: panics, fires, tampers and their restores, and a
    detection and a telemetry report in between (which must not be forwarded)."""
    kinds = [
        ("panic", "panic-1", NEW),
        ("tamper", "tamper-1", NEW),
        ("person", "cam-1", NEW),
        ("tamper", "tamper-1", RESTORE),
        ("fire", "smoke-1", NEW),
        ("telemetry", "hub", NEW),
        ("low_battery", "fob-2", NEW),
        ("comm_trouble", "hub", NEW),
    ]
    names = list(hubs)
    out = []
    for i in range(n):
        kind, zone, qualifier = kinds[i % len(kinds)]
        out.append(
            (names[i % len(names)], Event(kind=kind, zone=zone, source="test", qualifier=qualifier))
        )
    return out


def forwarded(
    events: Iterable[tuple[str, Event]], priorities: Iterable[int] = (0, 1)
) -> list[tuple[str, Event]]:
    wanted = set(priorities)
    return [(hub, e) for hub, e in events if int(e.priority) in wanted]


# -- the forwarder ----------------------------------------------------------------------------


def dc09_config(port: int, env: dict[str, str] | None = None, **keys: Any) -> Dc09Config:
    """``[forward.dc09]`` as an operator writes it, parsed with the receiver's config: quick
    retries and timeouts for tests unless ``keys`` say otherwise."""
    table: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "receiver_number": "1",
        "line_prefix": "2",
        "accounts": dict(HUBS),
        "ack_timeout_s": 2,
        "retry_max_s": 0.2,
        "link_test_s": 0,
    }
    table.update(keys)
    config = parse_receiver_config(
        {"receiver": {"commune": "phuong-1"}, "forward": {"dc09": table}},
        base_dir=Path.cwd(),
        env=env or {},
    )
    assert config.forward.dc09 is not None
    return config.forward.dc09


@contextmanager
def running(path: Path, config: Dc09Config) -> Iterator[Dc09Forwarder]:
    forwarder = Dc09Forwarder(path, config)
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()


def wait_for(
    forwarder: Dc09Forwarder, what: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    try:
        wait_until(lambda: predicate(forwarder.stats()), WAIT_S, what)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; the forwarder's stats: {forwarder.stats()}") from None
    return forwarder.stats()


# -- pysiaalarm's receiver ------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One message pysiaalarm accepted (ACKed and handed to its callback)."""

    account: str
    sequence: int
    qualifier: str | None
    code: str | None  # the Contact ID event code
    partition: str | None
    zone: str | None
    sia_code: str | None  # what pysiaalarm maps it to (PA: panic alarm...)
    encrypted: bool
    null: bool

    @classmethod
    def of(cls, event: SIAEvent) -> Arrival:
        return cls(
            account=str(event.account),
            sequence=int(str(event.sequence)),
            qualifier=event.event_qualifier,
            code=event.event_type,
            partition=event.partition,
            zone=event.ri,
            sia_code=event.code,
            encrypted=bool(event.encrypted),
            null=str(event.message_type) in ("NULL", "MessageTypes.NULL"),
        )


class SiaReceiver:
    """pysiaalarm's threaded TCP receiver on ``port``, knowing ``accounts`` (with ``key``);
    ``stop`` and ``start`` again to restart it on the same port. Every message it accepts is
    in ``arrivals``; its own error counters are in ``counts``."""

    def __init__(
        self,
        port: int | None = None,
        accounts: Iterable[str] = HUBS.values(),
        key: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.port = port or free_port()
        self.delay_s = delay_s  # each message held this long after its ACK (a slow centre)
        self.accounts = [SIAAccount(a, key) for a in [*accounts, "0000"]]
        self.arrivals: Collected[Arrival] = Collected(repr, WAIT_S)
        self._client: SIAClient | None = None

    def start(self) -> SiaReceiver:
        self._client = SIAClient(HOST, self.port, self.accounts, self._arrived)
        self._client.start()
        return self

    def _arrived(self, event: SIAEvent) -> None:
        self.arrivals.append(Arrival.of(event))
        if self.delay_s:
            time.sleep(self.delay_s)

    def events(self) -> list[Arrival]:
        return [a for a in self.arrivals.items() if not a.null]

    @property
    def counts(self) -> Any:
        assert self._client is not None
        return self._client.counts

    def stop(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    def __enter__(self) -> SiaReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- scripted peers -------------------------------------------------------------------------


class ScriptedPeer:
    """A TCP server on a free loopback port that reads each message (up to its CR) and sends
    ``answer(message)`` back (nothing when it returns None). ``received`` holds every message;
    ``connections`` counts the connections accepted."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.received: Collected[bytes] = Collected(repr, WAIT_S)
        self.connections = 0
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer.connections += 1
                buffer = b""
                self.request.settimeout(0.5)
                while not peer._closing.is_set():
                    try:
                        chunk = self.request.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\r" in buffer:
                        message, buffer = buffer.split(b"\r", 1)
                        message += b"\r"
                        peer.received.append(message)
                        reply = peer.answer(message)
                        if reply is not None:
                            self.request.sendall(reply)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def refusing_port() -> int:
    """A loopback port where nothing listens (a connection is refused at once)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])

"""The commune receiver: stores every hub event durably, then tells the hub it may forget it.

A broker's PUBACK only says the broker took a message, not that it will survive a crash. So the
hub keeps each event in its outbox until this receiver's *receipt* names the event's id, and the
receiver sends that receipt only after the event is committed to its own SQLite file.

Threads:
- paho's network thread runs the MQTT callbacks; they only record and enqueue.
- one writer thread owns the ``EventStore``: it takes everything queued (group commit), parses,
  stores, then publishes the receipts and acknowledges the messages to the broker.

The MQTT session is persistent (``clean_start=False``, a session expiry interval, a stable
client id) and messages are acknowledged by hand (``manual_ack=True``) after the commit. Events
published while the receiver is down wait in the broker, and a message the receiver took but did
not commit is delivered again when it reconnects.

Camera snapshots (``snapshot/<event-id>``, JPEG) of the commune's hubs are saved by the writer
thread next to the database, as ``snapshots/<hub>/<event-id>.jpg`` (written whole: a temporary
file, fsync, rename), before the batch is acknowledged. A payload that is not a JPEG, or larger
than ``MAX_SNAPSHOT_BYTES``, is counted in ``bad_snapshots`` and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from commune.store import EventStore, ReceivedEvent
from gateway.errors import TuquanError
from gateway.events import event_from_dict, utc_now_iso
from gateway.topics import (
    HubTopics,
    commune_event_filter,
    commune_snapshot_filter,
    parse_hub_topic,
)

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600  # the broker keeps our subscription and queue this long offline
DB_FILENAME = "receiver.sqlite3"
MAX_BATCH = 1000
MAX_ID_LENGTH = 64  # hubs reject a receipt holding a longer id (a UUID is 36)
_LOGGED_PAYLOAD_CHARS = 200
_STORE_RETRY_MAX_S = 30.0
SNAPSHOT_DIRNAME = "snapshots"  # beside the database: snapshots/<hub>/<event-id>.jpg
MAX_SNAPSHOT_BYTES = 4_000_000  # a hub's snapshot is a crop of tens of kilobytes
_SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HUB_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class ReceiverError(TuquanError):
    """The receiver cannot run (for example its event store cannot be opened)."""


@dataclass(frozen=True)
class ReceiverStats:
    received: int = 0  # messages taken from the broker (redeliveries included)
    stored: int = 0  # events stored for the first time
    duplicates: int = 0  # events already stored (re-sent by a hub or redelivered by the broker)
    malformed: int = 0  # messages dropped: bad topic, not JSON, not a valid event, wrong hub
    receipts_sent: int = 0  # receipt messages published (one per hub per batch)
    snapshots: int = 0  # camera snapshots saved (a re-sent one is saved again, same file)
    bad_snapshots: int = 0  # snapshot messages dropped: not a JPEG, too large, bad topic


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it; a PUBACK only means something on that one
    received_at: str


_STOP = object()


def tls_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """A client TLS context: verify the broker against ``ca_file`` (system CAs if None) and,
    with ``cert_file``, authenticate with a client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class Receiver:
    """Subscribes to every hub event of one commune, stores it, receipts it.

    ``on_new_event(event_dict)`` is called on the writer thread, after the commit, once per
    event id ever stored (not for duplicates); ``event_dict`` is the event's JSON object as
    published, with the contract fields in their normal types (``seq`` an int, and so on).
    An exception it raises is logged and does not affect storing or receipts.
    """

    def __init__(
        self,
        host: str,
        port: int,
        commune: str,
        db_path: str | Path,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        on_new_event: Callable[[dict[str, Any]], None] | None = None,
        share_group: str | None = None,
        keepalive: int = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.commune = commune
        self.db_path = Path(db_path)
        self.client_id = client_id or f"tuquan-receiver-{commune}"
        self.on_new_event = on_new_event
        filter_ = commune_event_filter(commune)
        self.topic_filter = f"$share/{share_group}/{filter_}" if share_group else filter_
        snapshots = commune_snapshot_filter(commune)
        self.snapshot_filter = f"$share/{share_group}/{snapshots}" if share_group else snapshots
        self.snapshot_dir = self.db_path.parent / SNAPSHOT_DIRNAME
        self.keepalive = keepalive

        self._queue: queue.Queue[_Incoming | object] = queue.Queue()
        self._stats = ReceiverStats()
        self._stats_lock = threading.Lock()
        self._connection = 0
        self._subscribe_mid: int | None = None
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._store_ready = threading.Event()
        self._store_error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._started = False

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set_context(tls)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client

    # -- life cycle ------------------------------------------------------------------------

    def start(self, store_timeout: float = 30.0) -> None:
        """Open the store (raises ReceiverError if it cannot), then connect in the background.

        Returns at once; the client keeps retrying until the broker answers. Use
        ``wait_subscribed`` to know when events flow.
        """
        if self._started:
            raise ReceiverError("receiver already started")
        self._started = True
        self._writer = threading.Thread(
            target=self._writer_main, name=f"receiver-writer-{self.commune}", daemon=True
        )
        self._writer.start()
        if not self._store_ready.wait(store_timeout):
            raise ReceiverError(f"event store {self.db_path} did not open in {store_timeout} s")
        if self._store_error is not None:
            raise ReceiverError(
                f"cannot open event store {self.db_path}: {self._store_error}"
            ) from self._store_error
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()
        log.info(
            "receiver %s: connecting to %s:%d, filter %s, store %s",
            self.client_id,
            self.host,
            self.port,
            self.topic_filter,
            self.db_path,
        )

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (store, receipt, ack), then disconnect. The broker keeps the
        session, so anything not acknowledged is delivered again on the next start."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout)
            if self._writer.is_alive():
                log.error("receiver writer did not finish within %s s", timeout)
        self._client.disconnect()
        self._client.loop_stop()
        log.info("receiver %s stopped: %s", self.client_id, self.stats)

    @property
    def stats(self) -> ReceiverStats:
        with self._stats_lock:
            return self._stats

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            current = self._stats
            self._stats = replace(
                current, **{k: getattr(current, k) + v for k, v in increments.items()}
            )

    # -- paho callbacks (paho's network thread: never raise, only record and enqueue) ------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                log.error(
                    "broker %s:%d refused the connection: %s", self.host, self.port, reason_code
                )
                return
            self._connection += 1
            log.info(
                "connected to %s:%d (session present: %s)",
                self.host,
                self.port,
                flags.session_present,
            )
            # Subscribe on every connect: the session may have expired or the broker restarted
            # without persistence.
            result, mid = client.subscribe(
                [
                    (self.topic_filter, SubscribeOptions(qos=1)),
                    (self.snapshot_filter, SubscribeOptions(qos=1)),
                ]
            )
            if result != mqtt.MQTT_ERR_SUCCESS:
                log.error(
                    "subscribe to %s failed: %s", self.topic_filter, mqtt.error_string(result)
                )
            self._subscribe_mid = mid
        except Exception:
            log.exception("error in on_connect")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        try:
            if mid != self._subscribe_mid:
                return
            refused = [rc for rc in reason_codes if rc.is_failure]
            if refused:
                log.error("broker refused subscription %s: %s", self.topic_filter, refused[0])
                return
            log.info("subscribed to %s and %s", self.topic_filter, self.snapshot_filter)
            self._subscribed.set()
        except Exception:
            log.exception("error in on_subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._queue.put(
                _Incoming(
                    topic=msg.topic,
                    payload=bytes(msg.payload),
                    mid=msg.mid,
                    qos=msg.qos,
                    connection=self._connection,
                    received_at=utc_now_iso(),
                )
            )
            self._count(received=1)
        except Exception:
            log.exception("error in on_message")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        try:
            self._subscribed.clear()
            if not self._stopping.is_set():
                log.warning(
                    "disconnected from %s:%d: %s; reconnecting", self.host, self.port, reason_code
                )
        except Exception:
            log.exception("error in on_disconnect")

    # -- writer thread ---------------------------------------------------------------------

    def _writer_main(self) -> None:
        try:
            store = EventStore(self.db_path)
        except BaseException as exc:
            self._store_error = exc
            self._store_ready.set()
            return
        self._store_ready.set()
        try:
            while True:
                batch, stop = self._take_batch()
                if batch:
                    try:
                        self._handle_batch(store, batch)
                    except Exception:
                        # Not acknowledged: the broker delivers these again after a reconnect.
                        log.exception("batch of %d message(s) not handled", len(batch))
                if stop:
                    return
        finally:
            store.close()

    def _take_batch(self) -> tuple[list[_Incoming], bool]:
        """Block for one message, then take whatever else is queued. (batch, stop seen)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, _Incoming)
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Incoming)
            batch.append(item)
        return batch, False

    def _handle_batch(self, store: EventStore, batch: list[_Incoming]) -> None:
        events: list[ReceivedEvent] = []
        for msg in batch:
            if _is_snapshot(msg.topic):
                self._save_snapshot(msg)
                continue
            parsed = self._parse(msg)
            if isinstance(parsed, ReceivedEvent):
                events.append(parsed)
            else:
                self._count(malformed=1)
                log.warning(
                    "dropped malformed message on %s: %s; payload %r",
                    msg.topic,
                    parsed,
                    msg.payload[:_LOGGED_PAYLOAD_CHARS],
                )
        new_flags = self._store(store, events)
        if new_flags is None:
            return  # stopping while the store fails: not acknowledged, delivered again later
        new_count = sum(new_flags)
        self._count(stored=new_count, duplicates=len(events) - new_count)

        # Only now, with the batch on disk, may hubs forget these events.
        receipts: dict[str, list[str]] = {}
        for event in events:
            ids = receipts.setdefault(event.hub, [])
            if event.id not in ids:
                ids.append(event.id)
        if receipts:
            self._send_receipts(receipts)
        self._ack(batch)

        if self.on_new_event is not None:
            for event, new in zip(events, new_flags, strict=True):
                if new:
                    try:
                        self.on_new_event(json.loads(event.payload) | self._normalised(event))
                    except Exception:
                        log.exception("on_new_event failed for event %s", event.id)

    @staticmethod
    def _normalised(event: ReceivedEvent) -> dict[str, Any]:
        return {
            "id": event.id,
            "hub": event.hub,
            "seq": event.seq,
            "kind": event.kind,
            "priority": event.priority,
            "zone": event.zone,
            "source": event.source,
            "ts": event.ts,
            "clock_synced": event.clock_synced,
            "cid": event.cid,
            "qualifier": event.qualifier,
            "data": event.data,
        }

    def _parse(self, msg: _Incoming) -> ReceivedEvent | str:
        """The event, or why the message is not one."""
        parts = parse_hub_topic(msg.topic)
        if parts is None:
            return "topic outside tuquan/v1/<commune>/<hub>/"
        commune, hub, rest = parts
        if commune != self.commune:
            return f"topic of commune {commune!r}, not {self.commune!r}"
        section, _, topic_kind = rest.partition("/")
        if section != "event" or not topic_kind:
            return "not an event topic"
        try:
            text = msg.payload.decode("utf-8")
            obj = json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return f"not UTF-8 JSON ({exc})"
        if not isinstance(obj, dict):
            return f"JSON {type(obj).__name__}, not an object"
        try:
            event = event_from_dict(obj)
        except KeyError as exc:
            return f"missing field {exc}"
        except (ValueError, TypeError) as exc:
            return f"invalid event ({exc})"
        if obj.get("hub") != hub:
            return f"payload hub {obj.get('hub')!r} is not the topic's hub {hub!r}"
        if event.kind != topic_kind:
            return f"payload kind {event.kind!r} is not the topic's kind {topic_kind!r}"
        if not 0 < len(event.id) <= MAX_ID_LENGTH:
            return f"id must be 1 to {MAX_ID_LENGTH} characters"
        return ReceivedEvent.from_event(
            event, hub=hub, commune=commune, payload=text, received_at=msg.received_at
        )

    def _save_snapshot(self, msg: _Incoming) -> None:
        """Save a camera snapshot as ``snapshots/<hub>/<event-id>.jpg``, or count it as bad."""
        reason = self._snapshot_problem(msg)
        if reason is not None:
            self._count(bad_snapshots=1)
            log.warning(
                "dropped snapshot message on %s (%d bytes): %s",
                msg.topic[:200],
                len(msg.payload),
                reason,
            )
            return
        parts = parse_hub_topic(msg.topic)
        assert parts is not None
        hub, event_id = parts[1], parts[2].split("/", 1)[1]
        path = self.snapshot_dir / hub / f"{event_id}.jpg"
        try:
            write_atomically(path, msg.payload)
        except OSError:
            # The hub keeps its snapshots: a console can ask again with cmd/snapshot.
            log.exception("snapshot %s of hub %s could not be saved", event_id, hub)
            return
        self._count(snapshots=1)
        log.info("snapshot of event %s from hub %s saved: %s", event_id, hub, path)

    def _snapshot_problem(self, msg: _Incoming) -> str | None:
        parts = parse_hub_topic(msg.topic)
        if parts is None:
            return "topic outside tuquan/v1/<commune>/<hub>/"
        commune, hub, rest = parts
        event_id = rest.split("/", 1)[1]
        if commune != self.commune:
            return f"topic of commune {commune!r}, not {self.commune!r}"
        if not _HUB_ID.fullmatch(hub):
            return "the hub in the topic is not a hub id"
        if not _SNAPSHOT_ID.fullmatch(event_id):
            return "the last topic level is not an event id"
        if len(msg.payload) > MAX_SNAPSHOT_BYTES:
            return f"larger than {MAX_SNAPSHOT_BYTES} bytes"
        if not is_jpeg(msg.payload):
            return "not a JPEG"
        return None

    def _store(self, store: EventStore, events: list[ReceivedEvent]) -> list[bool] | None:
        """Commit, retrying with backoff while the disk refuses; None if stopped meanwhile."""
        delay = 0.5
        while True:
            try:
                return store.store_batch(events)
            except Exception:
                log.exception("storing %d event(s) failed; retrying in %.1f s", len(events), delay)
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, _STORE_RETRY_MAX_S)

    def _send_receipts(self, receipts: dict[str, list[str]]) -> None:
        """Publish ``{"ids": [...]}`` to each hub's receipt topic (QoS 1). Called only after the
        events are committed. paho queues the message if the connection is down."""
        for hub, ids in receipts.items():
            payload = json.dumps({"ids": ids}, separators=(",", ":"))
            info = self._client.publish(HubTopics(self.commune, hub).receipt, payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("receipt to hub %s not queued: %s", hub, mqtt.error_string(info.rc))
                continue
            self._count(receipts_sent=1)

    def _ack(self, batch: list[_Incoming]) -> None:
        """PUBACK each message, on the connection that delivered it. After a reconnect the
        broker delivers unacknowledged messages again; those copies are acknowledged instead."""
        current = self._connection
        for msg in batch:
            if msg.qos > 0 and msg.connection == current:
                self._client.ack(msg.mid, msg.qos)


def _is_snapshot(topic: str) -> bool:
    parts = parse_hub_topic(topic)
    return parts is not None and parts[2].startswith("snapshot/")


def is_jpeg(data: bytes) -> bool:
    """A whole JPEG: it starts with SOI and an FF marker, and ends with EOI (some cameras pad
    the end; a few bytes after EOI are allowed)."""
    return len(data) > 4 and data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" in data[-32:]


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole: a temporary file beside it, fsync, rename, fsync the
    folder. A reader never sees half a file, and a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_receiver(
    host: str,
    port: int,
    commune: str,
    data_dir: str | Path,
    *,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    share_group: str | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run a receiver until SIGTERM/SIGINT (or ``stop`` is set); returns the exit status (0).

    Events are stored in ``<data_dir>/receiver.sqlite3``, camera snapshots in
    ``<data_dir>/snapshots/<hub>/<event-id>.jpg``. Each first-time event is written to
    ``out`` (stdout by default) as one JSON line: the police console's alert feed.
    Raises ReceiverError if the store cannot be opened.
    """
    data_path = Path(data_dir)
    data_path.mkdir(parents=True, exist_ok=True)
    stream = out if out is not None else sys.stdout
    stop_event = stop if stop is not None else threading.Event()

    def print_event(event: dict[str, Any]) -> None:
        stream.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
        stream.flush()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop_event.set())

    receiver = Receiver(
        host,
        port,
        commune,
        data_path / DB_FILENAME,
        client_id=client_id,
        username=username,
        password=password,
        tls=tls,
        on_new_event=print_event,
        share_group=share_group,
    )
    try:
        receiver.start()
        while not stop_event.wait(0.5):
            pass
    finally:
        receiver.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

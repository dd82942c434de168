"""The commune receiver: stores every hub event durably, then tells the hub it may forget it.

A broker's PUBACK only says the broker took a message, not that it will survive a crash. So the
hub keeps each event in its outbox until this receiver's *receipt* names the event's id, and the
receiver sends that receipt only after the event is committed to its store (SQLite or PostgreSQL).

Longer than 500 lines because the MQTT callbacks and the writer thread share one rule that must
be read in one place: a message is acknowledged only after its commit, only on the connection
that delivered it, and the receipt goes out before the acknowledgement. Validation, storing,
the feed and snapshots are already modules of their own.

Threads:
- paho's network thread runs the MQTT callbacks; they only record and enqueue.
- one writer thread owns the ``EventStore``: it takes everything queued (group commit),
  validates each message (``commune.validate``), stores the batch (``commune.storing``: a
  message the store refuses for good is quarantined, a sick disk is retried), hands the new
  rows to the alert feed (``commune.feed``), then publishes the receipts and acknowledges the
  messages to the broker.

One message costs one message: whatever goes wrong with it (refused at the edge, refused by
the store, an exception nobody foresaw) is counted, logged once, acknowledged and never
receipted. Only a disk that refuses every commit holds messages back, unacknowledged.

A receiver serves one commune, a list of them or every commune of its broker
(``commune.scope``): one pair of filters per commune (events, snapshots) or one pair for ``+``,
each behind ``$share/<group>/`` when several receivers share the work. The commune of an event
is its topic's, checked against the scope, and its receipt goes to that commune's hub.

Each time the subscription is in place the receiver publishes a retained
``{"state": "online", ...}`` on its communes' ``receiver_status_topic`` (hubs then re-send what
has no receipt); a receiver of every commune does so for a commune after its first receipt
there on the connection. Its last will, and a clean stop, say ``"offline"``.

The MQTT session is persistent (``clean_start=False``, a session expiry interval, a stable
client id) and messages are acknowledged by hand (``manual_ack=True``) after the commit. Events
published while the receiver is down wait in the broker, and a message the receiver took but did
not commit is delivered again when it reconnects. A member of a share group keeps its session
only briefly (``SHARED_SESSION_EXPIRY_S``): the broker goes on handing an offline member its
share until the session expires (docs/province.md).

Trust (``commune.trust``): once any hub is enrolled, an event is stored only if it verifies
with an acceptable key of its hub; one that does not is quarantined with reason
"unverified: <why>", counted as ``unverified``, handed to the alert feed once with
``"verified": false`` and never receipted. Receipts are signed with the commune's key.

Camera snapshots (``snapshot/<event-id>``, JPEG) are saved by the writer thread
(``commune.snapshots``) before the batch is acknowledged; a bad one is counted and dropped.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from commune.db import is_postgres_url, shown_location
from commune.feed import AlertFeed, unverified_event
from commune.receiver_status import ReceiverStatus
from commune.scope import CommuneScope
from commune.snapshots import SNAPSHOT_DIRNAME, SnapshotFiles, is_snapshot
from commune.store import EventStore, ReceivedEvent
from commune.storing import Outcome, Pending, Stopped, store_pending
from commune.trust import HubKeyring, load_commune_key
from commune.validate import InvalidEvent, parse_event
from core.errors import TuquanError
from core.events import utc_now_iso
from core.signing import KeyFileError, SigningKey
from core.topics import HubTopics, parse_hub_topic

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600  # the broker keeps our subscription and queue this long offline
# A share group's member: Mosquitto hands an offline member its share until the session expires,
# so a member that died stops stranding events after this long (then the hubs' re-sends reach
# the members still alive). Longer than a restart; about a hub's receipt timeout.
SHARED_SESSION_EXPIRY_S = 60
MAX_SESSION_EXPIRY_S = 2**32 - 1  # MQTT's largest: the session never expires
MAX_BATCH = 1000
_LOGGED_PAYLOAD_CHARS = 200
_STOP_MQTT_RESERVE_S = 3.0  # of stop()'s time, kept for "offline" and the disconnect
_OFFLINE_WAIT_S = 2.0  # how long stop() waits for the broker to take "offline"


class ReceiverError(TuquanError):
    """The receiver cannot run (for example its event store cannot be opened)."""


@dataclass(frozen=True)
class ReceiverStats:
    received: int = 0  # messages taken from the broker (redeliveries included)
    stored: int = 0  # events stored for the first time
    duplicates: int = 0  # events already stored (re-sent by a hub or redelivered by the broker)
    malformed: int = 0  # messages dropped: bad topic, not JSON, not a valid event, wrong hub
    quarantined: int = 0  # valid events the store refused for good (quarantine table)
    unverified: int = 0  # valid events that did not verify with their hub's key (quarantined)
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


def default_client_id(commune: str | CommuneScope) -> str:
    """The receiver's MQTT client id when its config names none (``tuquan-receiver-<commune>``;
    see ``CommuneScope.default_client_id`` for a list or ``+``)."""
    return CommuneScope.of(commune).default_client_id()


def default_session_expiry(share_group: str | None) -> int:
    """How long the broker keeps an offline receiver's session: a day, or briefly for a member
    of a share group."""
    return SHARED_SESSION_EXPIRY_S if share_group else SESSION_EXPIRY_S


class Receiver:
    """Subscribes to every hub event of its communes, stores it, receipts it.

    ``commune`` is one commune, ``"+"`` (every commune), a list, or a ``CommuneScope``
    (``ScopeError``, a ValueError, if invalid). ``session_expiry_s`` defaults to
    ``default_session_expiry(share_group)``.

    ``on_new_event(event_dict)`` is the alert feed: it is called on the writer thread for every
    stored event, in store order, at least once (again after a crash that came between the call
    and the recording of the feed's position, and, at start, for rows stored but not yet handed
    on), after the event is committed and before its receipt is sent. ``event_dict`` is the
    event's JSON object as published, with the contract fields as stored (``seq`` an int, and
    so on). Consumers key on ``id``. An exception it raises is logged and does not affect
    storing or receipts.

    ``store_factory`` opens the event store (``EventStore`` by default) on the writer thread.
    ``commune_key`` signs the receipts; by default the one in the store's directory
    (``commune.key``, made there on the first start).
    """

    def __init__(
        self,
        host: str,
        port: int,
        commune: str | Sequence[str] | CommuneScope,
        db_path: str | Path,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        on_new_event: Callable[[dict[str, Any]], None] | None = None,
        share_group: str | None = None,
        keepalive: int = 30,
        store_factory: Callable[[str | Path], EventStore] = EventStore,
        commune_key: SigningKey | None = None,
        data_dir: str | Path | None = None,
        session_expiry_s: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.scope = CommuneScope.of(commune)
        self.commune = self.scope.label  # the commune, "+" or "a+b": for logs and names
        # A SQLite file, or a PostgreSQL URL (then ``data_dir`` says where the key and the
        # snapshots are kept).
        self.db_path: str | Path = db_path if is_postgres_url(db_path) else Path(db_path)
        if data_dir is None and isinstance(self.db_path, str):
            raise ReceiverError("a receiver on PostgreSQL needs a data_dir for its key")
        self.data_dir = Path(data_dir) if data_dir is not None else Path(self.db_path).parent
        self.store_shown = shown_location(self.db_path)
        self.client_id = client_id or self.scope.default_client_id()
        self.on_new_event = on_new_event
        self.topic_filters = self.scope.filters(share_group)
        self.topic_filter = ", ".join(self.topic_filters)  # as logged
        self.snapshots = SnapshotFiles(self.data_dir / SNAPSHOT_DIRNAME, self.scope)
        self.snapshot_dir = self.snapshots.directory
        self.status_topic = self.scope.will_topic
        if session_expiry_s is None:
            session_expiry_s = default_session_expiry(share_group)
        if not 0 <= session_expiry_s <= MAX_SESSION_EXPIRY_S:
            raise ValueError(f"session_expiry_s must be 0 .. {MAX_SESSION_EXPIRY_S}")
        self.session_expiry_s = session_expiry_s
        self.keepalive = keepalive
        self._store_factory = store_factory
        self._feed = AlertFeed(on_new_event) if on_new_event is not None else None
        self.commune_key = commune_key
        self._keyring = HubKeyring()

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
        self._status = ReceiverStatus(client, self.scope, self.client_id)
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
        if self.commune_key is None:
            try:
                self.commune_key = load_commune_key(self.data_dir)
            except (KeyFileError, OSError) as exc:
                raise ReceiverError(f"cannot load the commune's signing key: {exc}") from exc
        self._writer = threading.Thread(
            target=self._writer_main, name=f"receiver-writer-{self.commune}", daemon=True
        )
        self._writer.start()
        if not self._store_ready.wait(store_timeout):
            raise ReceiverError(f"event store {self.store_shown} did not open in {store_timeout} s")
        if self._store_error is not None:
            raise ReceiverError(
                f"cannot open event store {self.store_shown}: {self._store_error}"
            ) from self._store_error
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        self._client.connect_async(
            self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()
        log.info(
            "receiver %s: connecting to %s:%d, filters %s, session expiry %d s, store %s",
            self.client_id,
            self.host,
            self.port,
            self.topic_filter,
            self.session_expiry_s,
            self.store_shown,
        )

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (store, receipt, ack), say "offline", then disconnect. The
        broker keeps the session, so anything not acknowledged is delivered again on the next
        start.

        Returns within about ``timeout`` seconds whatever the broker and the disk do: a writer
        still stuck in the store, or a network thread still connecting, is left behind (both
        are daemon threads, and nothing they hold has been acknowledged)."""
        if not self._started or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(max(0.1, timeout - _STOP_MQTT_RESERVE_S))
            if self._writer.is_alive():
                log.error("receiver writer did not finish in time; its batch stays unacknowledged")
        self._status.offline(min(_OFFLINE_WAIT_S, max(0.1, deadline - time.monotonic())))
        self._client.disconnect()
        # loop_stop joins paho's thread without a timeout; that thread may be inside a connect
        # (up to its connect timeout, or a DNS lookup with no bound at all).
        stopper = threading.Thread(
            target=self._client.loop_stop, name=f"receiver-stop-{self.commune}", daemon=True
        )
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic()))
        if stopper.is_alive():
            log.warning("the MQTT network thread did not stop in time; leaving it")
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
            self._status.new_connection(self._connection, bool(flags.session_present))
            log.info(
                "connected to %s:%d (session present: %s)",
                self.host,
                self.port,
                flags.session_present,
            )
            # Subscribe on every connect: the session may have expired or the broker restarted
            # without persistence.
            result, mid = client.subscribe(
                [(f, SubscribeOptions(qos=1)) for f in self.topic_filters]
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
            log.info("subscribed to %s", self.topic_filter)
            self._subscribed.set()
            # Hubs re-send every unreceipted event when they see this: what the broker took
            # while no receiver was subscribed does not wait for their receipt timeout.
            self._status.online()
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
            store = self._store_factory(self.db_path)
        except BaseException as exc:
            self._store_error = exc
            self._store_ready.set()
            return
        self._store_ready.set()
        try:
            self._refresh_keyring(store)  # says once whether events are verified
            self._run_feed(store)  # rows stored by an earlier run and never handed on
            while True:
                batch, stop = self._take_batch()
                if batch:
                    self._process(store, batch)
                if stop:
                    return
        finally:
            store.close()

    def _process(self, store: EventStore, batch: list[_Incoming]) -> None:
        """Handle one batch and acknowledge it, unless stopping caught it unstored."""
        try:
            acknowledge = self._handle_batch(store, batch)
        except Exception:
            # A fault of the receiver, not of a message: nothing that raises here may leave the
            # batch unacknowledged, where it would wait for a reconnect that nothing triggers.
            # What was not receipted, its hub sends again.
            log.exception("batch of %d message(s) not fully handled; acknowledged", len(batch))
            acknowledge = True
        if acknowledge:
            self._ack(batch)

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

    def _handle_batch(self, store: EventStore, batch: list[_Incoming]) -> bool:
        """Store, feed and receipt one batch; False if the receiver stopped while the store was
        failing (then nothing is acknowledged and the broker delivers it all again)."""
        self._refresh_keyring(store)
        pending: list[Pending] = []
        for msg in batch:
            parsed = self._accept(msg)
            if parsed is None:
                continue
            event, obj = parsed
            verdict = self._keyring.check(event.hub, obj)
            if verdict.verified is False:
                self._quarantine_unverified(store, msg, event, verdict.reason)
                continue
            if verdict.verified:
                event = replace(event, verified=True, sig=obj["sig"])
            pending.append(Pending(msg.topic, msg.payload, event))
        try:
            outcomes = store_pending(store, pending, self._stopping)
        except Stopped:
            return False
        self._count(
            stored=outcomes.count(Outcome.NEW),
            duplicates=outcomes.count(Outcome.DUPLICATE),
            quarantined=outcomes.count(Outcome.QUARANTINED),
        )
        self._run_feed(store)

        # Only now, with the batch on disk, may hubs forget these events.
        receipts: dict[tuple[str, str], list[str]] = {}
        for item, outcome in zip(pending, outcomes, strict=True):
            if outcome is Outcome.QUARANTINED:
                continue
            ids = receipts.setdefault((item.event.commune, item.event.hub), [])
            if item.event.id not in ids:
                ids.append(item.event.id)
        if receipts:
            self._send_receipts(receipts)
            self._status.announce(commune for commune, _ in receipts)
        return True

    def _refresh_keyring(self, store: EventStore) -> None:
        try:
            self._keyring.refresh(store)
        except Exception as exc:  # the keys as last read stay in force
            log.error("enrolled hub keys could not be read: %s", exc)

    def _quarantine_unverified(
        self, store: EventStore, msg: _Incoming, event: ReceivedEvent, why: str
    ) -> None:
        """Keep an event that did not verify apart, count it, show it on the feed as
        unverified (once per distinct message); never stored as an event, never receipted."""
        reason = f"unverified: {why}"
        try:
            self._keep_unverified(store, msg, event, reason)
        finally:  # counted once it is kept and shown, so a count seen means both are done
            self._count(unverified=1)

    def _keep_unverified(
        self, store: EventStore, msg: _Incoming, event: ReceivedEvent, reason: str
    ) -> None:
        try:
            new = store.quarantine(msg.topic, msg.payload, reason, msg.received_at)
        except Exception as exc:
            # The hub (if it is one) still holds the event: nothing was receipted.
            log.error("unverified event on %s not quarantined (%s): dropped", msg.topic, exc)
            new = True
        if not new:
            log.debug("unverified event %s on %s again: %s", event.id, msg.topic, reason)
            return
        log.warning("event %s on %s quarantined: %s", event.id, msg.topic[:200], reason)
        if self.on_new_event is not None:
            try:
                self.on_new_event(unverified_event(event, reason))
            except Exception as exc:
                log.error("alert feed callback failed for unverified event %s: %r", event.id, exc)

    def _accept(self, msg: _Incoming) -> tuple[ReceivedEvent, dict[str, Any]] | None:
        """The event a message carries, with its JSON object; None for a snapshot (saved here)
        or a message dropped as malformed. Whatever goes wrong costs this message only, with
        one log line."""
        try:
            if is_snapshot(msg.topic):
                self._save_snapshot(msg)
                return None
            commune = self._commune_of(msg.topic)
            return parse_event(msg.topic, msg.payload, commune=commune, received_at=msg.received_at)
        except InvalidEvent as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        self._count(malformed=1)
        log.warning(
            "dropped malformed message on %s: %s; payload %r",
            msg.topic[:_LOGGED_PAYLOAD_CHARS],
            reason[:_LOGGED_PAYLOAD_CHARS],
            msg.payload[:_LOGGED_PAYLOAD_CHARS],
        )
        return None

    def _commune_of(self, topic: str) -> str:
        """The commune an event's topic names, if this receiver serves it (InvalidEvent else:
        a broker or a bridge that carries more than asked for costs those messages only)."""
        parts = parse_hub_topic(topic)
        if parts is None:
            raise InvalidEvent("topic outside tuquan/v1/<commune>/<hub>/")
        if not self.scope.accepts(parts[0]):
            raise InvalidEvent(f"topic of commune {parts[0][:64]!r}, not {self.commune!r}")
        return parts[0]

    def _run_feed(self, store: EventStore) -> None:
        if self._feed is None:
            return
        try:
            self._feed.catch_up(store)
        except Exception as exc:
            # The rows stay after the feed's position: the next batch hands them on.
            log.error("alert feed could not read the store: %s", exc)

    def _save_snapshot(self, msg: _Incoming) -> None:
        """Save a camera snapshot as ``snapshots/<hub>/<event-id>.jpg``, or count it as bad."""
        reason = self.snapshots.problem(msg.topic, msg.payload)
        if reason is not None:
            self._count(bad_snapshots=1)
            log.warning(
                "dropped snapshot message on %s (%d bytes): %s",
                msg.topic[:200],
                len(msg.payload),
                reason,
            )
            return
        try:
            path = self.snapshots.save(msg.topic, msg.payload)
        except OSError:
            # The hub keeps its snapshots: a console can ask again with cmd/snapshot.
            log.exception("snapshot on %s could not be saved", msg.topic[:200])
            return
        self._count(snapshots=1)
        log.info("snapshot saved: %s", path)

    def _send_receipts(self, receipts: dict[tuple[str, str], list[str]]) -> None:
        """Publish ``{"hub", "ids", "ts", "kid", "sig"}`` (signed by the commune, purpose
        "receipt") to each (commune, hub)'s receipt topic (QoS 1). Called only after the events
        are committed. paho queues the message if the connection is down."""
        assert self.commune_key is not None  # loaded by start()
        for (commune, hub), ids in receipts.items():
            receipt = self.commune_key.sign("receipt", {"hub": hub, "ids": ids, "ts": time.time()})
            payload = json.dumps(receipt, separators=(",", ":"))
            # Counted before it leaves, so a hub that has its receipt sees it counted.
            self._count(receipts_sent=1)
            info = self._client.publish(HubTopics(commune, hub).receipt, payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._count(receipts_sent=-1)
                log.warning("receipt to hub %s not queued: %s", hub, mqtt.error_string(info.rc))

    def _ack(self, batch: list[_Incoming]) -> None:
        """PUBACK each message, on the connection that delivered it. After a reconnect the
        broker delivers unacknowledged messages again; those copies are acknowledged instead."""
        current = self._connection
        for msg in batch:
            if msg.qos > 0 and msg.connection == current:
                try:
                    self._client.ack(msg.mid, msg.qos)
                except Exception as exc:  # the connection went away meanwhile: redelivered
                    log.warning("acknowledging message %d failed: %s", msg.mid, exc)

"""The MQTT uplink: one paho-mqtt 2 client (MQTT 5, QoS 1, persistent session).

paho's network thread runs every callback below. Callbacks only hand data on to the callables
the uplink was given (which enqueue for the store thread) and never raise: an exception in a
paho callback would kill its loop thread.

A link can be silent without closing (a dead NAT entry, a black-holed route): TCP stays open,
nothing passes, and paho's keepalive notices only after about twice ``keepalive_s``. So a
watch thread of the uplink's own ("uplink-watch") publishes a small ping to the hub's own
``ping`` topic, which it subscribes to, every ``ping_interval_s``: the PUBACK proves the broker
reachable, the echo that it routes to us. Anything heard from the broker (echo, PUBACK, SUBACK,
any message) keeps the link alive; nothing for ``link_timeout_s`` marks it silent, and the
watch thread shuts the socket down. paho's own thread then sees the connection end, reports
it like any lost connection and reconnects with its usual backoff (a ``disconnect()`` would
stop paho's reconnect loop for good).

Another client connecting with this hub's client id takes its session over (``takeover.py``):
logged once per episode, counted, and followed by a long wait before reconnecting, so two hubs
sharing an id do not knock each other off every second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import sys
import threading
import time
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.events import utc_iso
from core.topics import HubTopics, receiver_status_topic
from gateway.inbound import parse_ping_echo, parse_receipt, parse_receiver_status
from gateway.link_state import (
    LINK_OFFLINE,
    LINK_ONLINE,
    LINK_SILENT,
    LinkStatus,
    Liveness,
    Outage,
    UplinkHandlers,
    UplinkStats,
)
from gateway.own_status import OwnStatus
from gateway.pings import Pings
from gateway.takeover import (
    TAKEOVER_BACKOFF_S,
    TAKEOVER_QUIET_S,
    TakeoverWatch,
    takeover_message,
)

# The uplink's types are importable from here too (its callers build them).
__all__ = [
    "LINK_OFFLINE",
    "LINK_ONLINE",
    "LINK_SILENT",
    "LinkStatus",
    "Liveness",
    "Outage",
    "Uplink",
    "UplinkHandlers",
    "UplinkStats",
]
from gateway.broker import BrokerSettings, settings_tls_context

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # keep receipts and commands queued through a week offline
ONLINE, OFFLINE = b"online", b"offline"

WATCH_STEP_S = 0.25  # how often the watch thread looks at the link


class Uplink:
    def __init__(
        self,
        settings: BrokerSettings,
        topics: HubTopics,
        handlers: UplinkHandlers,
        *,
        max_inflight: int = 0,
        liveness: Liveness | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.handlers = handlers
        self.liveness = liveness or Liveness()
        self.receiver_status = receiver_status_topic(topics.commune)
        self.own_status = OwnStatus(topics.status)
        self.stats = UplinkStats()
        self.connected = False
        self._stopping = False
        self._last_fail: tuple[str, float] = ("", 0.0)
        # The link's state: written by paho's thread and the watch thread, under the lock.
        # The lock is never held while calling into paho (paho calls us holding its own).
        self._lock = threading.Lock()
        self._state = LINK_OFFLINE
        self._since = time.time()
        self._outage: Outage | None = None
        self._last_down_s: float | None = None
        self._last_heard = 0.0  # monotonic: the last sign of life from the broker
        self._connected_since = 0.0
        self._attempt_started: float | None = None  # a CONNECT waiting for its CONNACK
        self._pings = Pings(self.liveness.ping_interval_s)
        self._ping_refused_logged = False
        self._takeovers = TakeoverWatch()
        self._hard_backoff = False
        self._stop_watch = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, name="uplink-watch", daemon=True)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(max_inflight)  # 0: the dispatcher's window bounds it
        client.will_set(topics.status, OFFLINE, qos=1, retain=True)
        # paho doubles its reconnect delay from min to max, without jitter of its own: each hub
        # draws its own pair so 4,000 hubs don't reconnect in lockstep after a broker restart.
        # The cap stays short because an alarm waits for it: 4,000 hubs retrying every 20-30 s
        # are ~150 connection attempts a second, which any broker takes.
        self._delays = (random.randint(1, 2), random.randint(20, 30))
        client.reconnect_delay_set(min_delay=self._delays[0], max_delay=self._delays[1])
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        tls = settings_tls_context(settings)
        if tls is not None:
            client.tls_set_context(tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_pre_connect = self._on_pre_connect
        self.client = client

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried with backoff."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._watch.start()

    def stop(self) -> None:
        """Say offline (a clean disconnect does not fire the will) and close."""
        self._stopping = True
        self._stop_watch.set()
        if self._watch.is_alive():
            self._watch.join(5.0)
        if self.connected:
            info = self.client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    # -- publishing (any thread) ----------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> int:
        """Queue a message; returns its mid (paho keeps it and re-sends it across reconnects)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return int(info.mid)

    def publish_json(self, topic: str, obj: Any, *, retain: bool = False, qos: int = 1) -> int:
        payload = json.dumps(obj, separators=(",", ":")).encode()
        return self.publish(topic, payload, retain=retain, qos=qos)

    # -- the link's state (any thread) ----------------------------------------------------

    @property
    def online(self) -> bool:
        """Connected and not found silent."""
        return self._state == LINK_ONLINE

    def health(self) -> dict[str, Any]:
        """Health's ``uplink`` object (docs/operations.md#health)."""
        with self._lock:
            outage = self._outage
            return {
                "state": self._state,
                "since": utc_iso(self._since),
                "cause": outage.cause if outage else None,
                "rtt_ms": self._pings.rtt_ms,
                "outages": self.stats.outages,
                "silent": self.stats.silent,
                "takeovers": self.stats.takeovers,
                "last_down_s": self._last_down_s,
                "bad_receiver_status": self.stats.bad_receiver_status,
                "status_overwritten": self.own_status.overwritten,
            }

    def _status(self, ended: Outage | None = None, down_s: float | None = None) -> LinkStatus:
        """Call with the lock held."""
        return LinkStatus(self._state, self._since, self._outage, ended, down_s)

    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    # -- the watch thread: pings and silence ------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stop_watch.wait(WATCH_STEP_S):
            try:
                self._check(time.monotonic())
            except Exception:
                log.exception("uplink watch error")

    def _check(self, now: float) -> None:
        timeout = self.liveness.link_timeout_s
        if self.connected:
            if now - self._last_heard >= timeout:
                self._went_silent(now)
            elif self._pings.due(now):
                self._ping(now)
            if self._takeovers.over(now, self._connected_since):
                log.info(
                    "client id %s has been ours for %.0f s: the takeovers have stopped",
                    self.settings.client_id,
                    TAKEOVER_QUIET_S,
                )
            return
        started = self._attempt_started
        if started is not None and now - started >= timeout and self.client.socket() is not None:
            # TCP is up but the CONNACK never came (the same silent path): try again, sooner
            # than paho's keepalive would.
            self._attempt_started = None
            self._log_fail(f"no answer to CONNECT within {timeout:g} s")
            self._drop_socket()

    def _ping(self, now: float) -> None:
        info = self.client.publish(self.topics.ping, self._pings.next_payload(now), qos=1)
        self._pings.published(info.mid)
        self.stats.pings = self._pings.sent

    def _went_silent(self, now: float) -> None:
        with self._lock:
            if not self.connected or self._stopping:
                return
            quiet_s = now - self._last_heard
            self.connected = False
            # Lost when last heard from: the silence began then, not when it was noticed.
            self._outage = Outage(LINK_SILENT, time.time() - quiet_s, self._last_heard)
            self._since = time.time()
            self._state = LINK_SILENT
            self._takeovers.ended_by_us()
            self.stats.outages += 1
            self.stats.silent += 1
            self.handlers.link_changed(self._status())
        log.warning(
            "link to broker %s:%d is silent: nothing from the broker for %.0f s (no ping echo,"
            " no PUBACK, no message); dropping the connection to reconnect",
            self.settings.host,
            self.settings.port,
            quiet_s,
        )
        self.handlers.disconnected()
        self._drop_socket()

    def _drop_socket(self) -> None:
        """End the connection from outside paho's thread without stopping its reconnect loop:
        paho reads end-of-file, reports a lost connection and reconnects with its backoff."""
        sock = self.client.socket()
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already gone: paho has noticed by itself
            # The plain socket's shutdown, also under TLS: the SSL object stays paho's.
            socket.socket.shutdown(cast(socket.socket, sock), socket.SHUT_RDWR)

    def _log_fail(self, text: str) -> None:
        """Why a connection cannot be made: when it changes, and once a minute otherwise."""
        now = time.monotonic()
        if text != self._last_fail[0] or now - self._last_fail[1] >= 60.0:
            self._last_fail = (text, now)
            log.error(
                "cannot connect to broker %s:%d: %s",
                self.settings.host,
                self.settings.port,
                text,
            )

    def _set_backoff(self, hard: bool) -> None:
        """After a takeover, wait long before reconnecting; otherwise paho's usual delays."""
        if hard == self._hard_backoff:
            return
        self._hard_backoff = hard
        low, high = self._delays
        if hard:
            low = TAKEOVER_BACKOFF_S + random.randint(0, 10)
            high = max(low, high)
        self.client.reconnect_delay_set(min_delay=low, max_delay=high)

    # -- paho callbacks (paho's network thread) -------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: Any,
        properties: Any,
    ) -> None:
        try:
            self._attempt_started = None
            if reason_code.is_failure:
                log.error("broker refused connection: %s", reason_code)
                return
            now = time.monotonic()
            with self._lock:
                self._last_heard = self._connected_since = now
                self._pings.restart(now)
                self.connected = True
                self.stats.connects += 1
                ended, self._outage = self._outage, None
                down_s = round(now - ended.started_mono, 1) if ended else None
                if down_s is not None:
                    self._last_down_s = down_s
                self._state, self._since = LINK_ONLINE, time.time()
                self.handlers.link_changed(self._status(ended, down_s))
            log.info(
                "connected to %s:%d (session present: %s)%s",
                self.settings.host,
                self.settings.port,
                flags.session_present,
                f" after {down_s:.1f} s down ({ended.cause})" if ended else "",
            )
            client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            self.own_status.connected()
            # Retain-as-published: the hub sees that a command was retained even when it is
            # published while subscribed, and refuses it (it would re-run at every reconnect).
            # The ping echo at QoS 0: a stale ping is worth nothing after a reconnect.
            client.subscribe(
                [
                    (self.topics.receipt, SubscribeOptions(qos=1)),
                    (self.topics.cmd_filter, SubscribeOptions(qos=1, retainAsPublished=True)),
                    (self.topics.ping, SubscribeOptions(qos=0)),
                    (self.receiver_status, SubscribeOptions(qos=1)),
                    (self.topics.status, SubscribeOptions(qos=1, noLocal=True)),
                ]
            )
            self.handlers.connected()
        except Exception:
            log.exception("error in on_connect")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: Any,
        properties: Any,
    ) -> None:
        try:
            now = time.monotonic()
            with self._lock:
                was = self.connected
                self.connected = False
                takeover = inferred = False
                if was and not self._stopping:
                    takeover, inferred = self._takeovers.closed(
                        flags, reason_code, now, self._connected_since
                    )
                    cause = "takeover" if takeover else "disconnected"
                    self._outage = Outage(cause, time.time(), now)
                    self._state, self._since = LINK_OFFLINE, self._outage.started
                    self.stats.outages += 1
                    self.handlers.link_changed(self._status())
                first_takeover = takeover and self._takeovers.begins()
                if takeover:
                    self.stats.takeovers += 1
            if was:
                self.stats.disconnects += 1
                if self._stopping:
                    log.info("disconnected from broker")
                elif not takeover:
                    log.warning("disconnected from broker: %s", reason_code)
            if first_takeover:
                log.error("%s", takeover_message(self.settings.client_id, inferred))
            if not self._stopping:
                self._set_backoff(hard=takeover)  # before paho's thread waits to reconnect
            self.handlers.disconnected()
        except Exception:
            log.exception("error in on_disconnect")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """The TCP or TLS connection could not be made (a refused CONNECT goes to on_connect).

        paho calls this inside its ``except OSError`` block, so the error is at hand. Logged
        when it changes and once a minute otherwise: an installer must see why, a log must not
        fill up during a long outage."""
        try:
            self._attempt_started = None
            error = sys.exc_info()[1]
            self._log_fail(f"{type(error).__name__}: {error}" if error else "unknown error")
        except Exception:
            log.exception("error in on_connect_fail")

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """paho is about to open a connection: its CONNACK is due within link_timeout_s."""
        self._attempt_started = time.monotonic()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        try:
            self._heard()  # every publish is QoS 1: this is the broker's PUBACK
            if self._pings.is_ping(mid):
                if reason_code.is_failure and not self._ping_refused_logged:
                    self._ping_refused_logged = True
                    log.warning(
                        "the broker refuses the hub's pings on %s (%s): let the hub write and"
                        " read it in the ACL; until then only PUBACKs show the link alive",
                        self.topics.ping,
                        reason_code,
                    )
                return
            self.handlers.published(mid, not reason_code.is_failure)
        except Exception:
            log.exception("error in on_publish")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        try:
            self._heard()
            topics = (self.topics.receipt, self.topics.cmd_filter, self.topics.ping)
            for topic, code in zip((*topics, self.receiver_status), reason_codes, strict=False):
                if code.is_failure:
                    log.error("broker refused the subscription to %s: %s", topic, code)
        except Exception:
            log.exception("error in on_subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._heard()
            if msg.topic == self.topics.receipt:
                receipt = parse_receipt(bytes(msg.payload))
                if receipt is None:
                    self.stats.bad_receipts += 1
                    log.warning("dropped malformed receipt (%d bytes)", len(msg.payload))
                    return
                self.handlers.receipt(receipt)  # its signature is checked there (receipts.py)
            elif msg.topic == self.topics.ping:
                self._on_echo(bytes(msg.payload))
            elif msg.topic == self.receiver_status:
                self._on_receiver_status(bytes(msg.payload), bool(msg.retain))
            elif msg.topic == self.topics.status and not msg.retain:  # retained: from before
                if self.own_status.seen(bytes(msg.payload), self.connected and not self._stopping):
                    client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            elif msg.topic.startswith(self.topics.base + "/cmd/"):
                # The broker sends what remains of a message's expiry: signed commands on a hub
                # without a synchronised clock rely on it (gateway/command_check.py).
                expiry = getattr(msg.properties, "MessageExpiryInterval", None)
                self.handlers.command(
                    msg.topic.rsplit("/", 1)[1],
                    bytes(msg.payload),
                    bool(msg.retain),
                    expiry if isinstance(expiry, int) else None,
                )
        except Exception:
            log.exception("error handling message on %s", msg.topic)

    def _on_echo(self, payload: bytes) -> None:
        """Our own ping back from the broker: the round trip."""
        n = parse_ping_echo(payload)
        if n is not None:  # else not ours (the ACL should stop others); it still proved the link
            self._pings.echoed(n)
            self.stats.echoes = self._pings.echoes

    def _on_receiver_status(self, payload: bytes, retained: bool) -> None:
        """The receiver re-subscribed: re-send the unreceipted, unless its session was kept."""
        try:
            state, session_present = parse_receiver_status(payload)
        except ValueError as exc:
            self.stats.bad_receiver_status += 1
            log.warning("dropped malformed receiver status (%d bytes): %s", len(payload), exc)
            return
        if state == "online" and session_present:  # what it missed is queued for it
            log.info("the commune receiver is back with its session; nothing to re-send")
        elif state == "online":
            log.info("the commune receiver is online%s", " (retained)" if retained else "")
            self.handlers.receiver_online()

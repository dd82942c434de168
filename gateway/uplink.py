"""The MQTT uplink: one paho-mqtt 2 client (MQTT 5, QoS 1, persistent session).

paho's network thread runs every callback below. Callbacks only hand data on to the callables
the uplink was given (which enqueue for the store thread) and never raise: an exception in a
paho callback would kill its loop thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.topics import HubTopics

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # keep receipts and commands queued through a week offline
ONLINE, OFFLINE = b"online", b"offline"


@dataclass(frozen=True)
class BrokerSettings:
    """What the uplink needs to reach a broker (built from the config's [broker])."""

    host: str
    port: int
    client_id: str
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls: bool = False
    tls_insecure: bool = False

    def __repr__(self) -> str:  # never show the password
        return f"BrokerSettings(host={self.host!r}, port={self.port}, client_id={self.client_id!r})"


@dataclass
class UplinkHandlers:
    """Where the uplink reports. Each runs on paho's network thread and must be quick."""

    connected: Callable[[], None]
    disconnected: Callable[[], None]
    published: Callable[[int, bool], None]  # (mid, broker accepted it)
    receipt: Callable[[list[str]], None]
    command: Callable[[str, bytes, bool], None]  # name, payload, retained


@dataclass
class UplinkStats:
    connects: int = 0
    disconnects: int = 0
    bad_receipts: int = 0


class Uplink:
    def __init__(
        self,
        settings: BrokerSettings,
        topics: HubTopics,
        handlers: UplinkHandlers,
        *,
        max_inflight: int = 64,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.handlers = handlers
        self.stats = UplinkStats()
        self.connected = False
        self._stopping = False
        self._last_fail: tuple[str, float] = ("", 0.0)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(max_inflight)
        client.will_set(topics.status, OFFLINE, qos=1, retain=True)
        # paho doubles its reconnect delay from min to max, without jitter of its own: each hub
        # draws its own pair so 4,000 hubs don't reconnect in lockstep after a broker restart.
        # The cap stays short because an alarm waits for it: 4,000 hubs retrying every 20-30 s
        # are ~150 connection attempts a second, which any broker takes.
        client.reconnect_delay_set(min_delay=random.randint(1, 2), max_delay=random.randint(20, 30))
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls or settings.ca_file:
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if settings.tls_insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
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

    def stop(self) -> None:
        """Say offline (a clean disconnect does not fire the will) and close."""
        self._stopping = True
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
        return self.publish(
            topic, json.dumps(obj, separators=(",", ":")).encode(), retain=retain, qos=qos
        )

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
            if reason_code.is_failure:
                log.error("broker refused connection: %s", reason_code)
                return
            self.connected = True
            self.stats.connects += 1
            log.info(
                "connected to %s:%d (session present: %s)",
                self.settings.host,
                self.settings.port,
                flags.session_present,
            )
            client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            # Retain-as-published: the hub sees that a command was retained even when it is
            # published while subscribed, and refuses it (it would re-run at every reconnect).
            client.subscribe(
                [
                    (self.topics.receipt, SubscribeOptions(qos=1)),
                    (self.topics.cmd_filter, SubscribeOptions(qos=1, retainAsPublished=True)),
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
            was = self.connected
            self.connected = False
            if was:
                self.stats.disconnects += 1
                if self._stopping:
                    log.info("disconnected from broker")
                else:
                    log.warning("disconnected from broker: %s", reason_code)
            self.handlers.disconnected()
        except Exception:
            log.exception("error in on_disconnect")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """The TCP or TLS connection could not be made (a refused CONNECT goes to on_connect).

        paho calls this inside its ``except OSError`` block, so the error is at hand. Logged
        when it changes and once a minute otherwise: an installer must see why, a log must not
        fill up during a long outage."""
        try:
            error = sys.exc_info()[1]
            text = f"{type(error).__name__}: {error}" if error else "unknown error"
            now = time.monotonic()
            if text != self._last_fail[0] or now - self._last_fail[1] >= 60.0:
                self._last_fail = (text, now)
                log.error(
                    "cannot connect to broker %s:%d: %s",
                    self.settings.host,
                    self.settings.port,
                    text,
                )
        except Exception:
            log.exception("error in on_connect_fail")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        try:
            self.handlers.published(mid, not reason_code.is_failure)
        except Exception:
            log.exception("error in on_publish")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == self.topics.receipt:
                ids = _parse_receipt(bytes(msg.payload))
                if ids is None:
                    self.stats.bad_receipts += 1
                    log.warning("dropped malformed receipt (%d bytes)", len(msg.payload))
                    return
                self.handlers.receipt(ids)
            elif msg.topic.startswith(self.topics.base + "/cmd/"):
                self.handlers.command(
                    msg.topic.rsplit("/", 1)[1], bytes(msg.payload), bool(msg.retain)
                )
        except Exception:
            log.exception("error handling message on %s", msg.topic)


def _parse_receipt(payload: bytes) -> list[str] | None:
    """A receipt is ``{"ids": ["<event id>", ...]}``; anything else is None."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    ids = obj.get("ids") if isinstance(obj, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and len(i) <= 64 for i in ids):
        return None
    return ids

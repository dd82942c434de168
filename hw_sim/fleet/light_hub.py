"""A lightweight simulated hub: the hub's whole wire contract over one paho client, with no
threads, files or hardware of its own.

What it speaks (docs/topics.md): MQTT 5 with a persistent session (``clean_start=False``, a
session expiry, the client id ``tuquan-<commune>-<hub>``); ``offline`` retained as its last
will and ``online`` retained at each connect; retained ``health`` at connect and every
``health_s``; events on ``event/<kind>`` at QoS 1 with a per-hub ``seq``, each kept in memory
until a receipt names it, sent again after a reconnect (those the broker had acknowledged:
paho re-sends the rest itself), when the commune's receiver announces a new session on its
retained status, and when no receipt came within ``receipt_timeout_s``; receipts checked
against the commune's key when it has one (``gateway.receipts``); commands answered on
``cmd_result`` (``commands.py``); optionally its own ``ping``.

Everything runs on its loop's thread (``net_loop.py``), except the connect itself, which a
connector thread makes (``connector.py``): the socket callbacks paho makes there are handed to
the loop, and nothing else touches the client while ``connecting`` is set.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.events import Priority
from core.safe_json import loads_untrusted
from core.signing import PublicKey, SigningKey
from core.topics import HubTopics, receiver_status_topic
from gateway.commands import Commands
from gateway.inbound import RECEIVER_STATUS_MAX_BYTES, parse_receipt
from gateway.receipts import ReceiptGate
from hw_sim.fleet import payloads
from hw_sim.fleet.commands import hub_commands
from hw_sim.fleet.connector import Connector
from hw_sim.fleet.ledger import HubLedger, LatencyBook, Pending
from hw_sim.fleet.net_loop import NetLoop
from hw_sim.fleet.profile import BrokerTarget, HubTiming

log = logging.getLogger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
_PRIORITY_NAMES = {int(p): p.name.lower() for p in Priority}


def _nothing(*args: object) -> None:
    pass


class HubCounters:
    """What one hub counts (read for the summary; a hub's own health shows some)."""

    __slots__ = (
        "connects", "disconnects", "connect_failures", "published", "resent", "health",
        "receipts", "bad_receipts", "forged_receipts", "commands", "bad_receiver_status",
        "echoes", "refused",
    )  # fmt: skip
    connects: int
    disconnects: int
    connect_failures: int
    published: int
    resent: int
    health: int
    receipts: int
    bad_receipts: int
    forged_receipts: int
    commands: int
    bad_receiver_status: int
    echoes: int
    refused: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class LightHub:
    def __init__(
        self,
        hub: str,
        target: BrokerTarget,
        timing: HubTiming,
        loop: NetLoop,
        connector: Connector,
        latency: LatencyBook,
        *,
        signer: SigningKey | None = None,
        commune_key: PublicKey | None = None,
        replay_dir: Path | None = None,
    ) -> None:
        self.hub = hub
        self.target = target
        self.timing = timing
        self.loop = loop
        self.connector = connector
        self.signer = signer
        self.commune_key = commune_key
        self.replay_dir = replay_dir or Path(".")
        self.topics = HubTopics(target.commune, hub)
        self.receiver_status = receiver_status_topic(target.commune)
        self.ledger = HubLedger(latency)
        self.counters = HubCounters()
        self.connected = False
        self.connecting = False
        self.stopping = False
        self.ever_connected = False
        self.connection = 0
        self.receiver_session: str | None = None
        self.load_until = 0.0  # telemetry is made until then (time.monotonic())
        self._started = time.monotonic()
        self._since = time.time()
        self._backoff = 0.0
        self._delays = (random.uniform(1.0, 2.0), random.uniform(20.0, 30.0))
        self._gate = ReceiptGate(hub, commune_key, _nothing) if commune_key is not None else None
        self._commands: Commands | None = None
        self._pings = 0
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tuquan-{self.target.commune}-{self.hub}",
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(self.timing.max_inflight)
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    # -- life (the loop's thread) ---------------------------------------------------------

    def start(self) -> None:
        self.loop.add(self)
        self._connect_soon(0.0)

    def stop(self) -> None:
        """Say offline (a clean disconnect does not fire the will) and disconnect; the session
        is ended too unless the timing keeps it."""
        self.stopping = True
        if not self.connected:
            return
        self.client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
        props = None
        if not self.timing.keep_sessions:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)

    def misc(self) -> None:
        """The loop's keepalive sweep: paho's loop_misc, unless a connector has the client."""
        if not self.connecting and self.client.socket() is not None:
            self.client.loop_misc()

    def _connect_soon(self, delay: float) -> None:
        if self.stopping:
            return
        self.loop.call_at(time.monotonic() + delay, self._submit_connect)

    def _submit_connect(self) -> None:
        if self.stopping or self.connecting or self.connected:
            return
        self.connecting = True
        self.connector.submit(self._connect_job)

    def _connect_job(self) -> None:
        """On a connector thread: open the connection and send CONNECT (unless the fleet
        stopped while this waited its turn)."""
        if self.stopping:
            self.loop.call_soon(self._connect_sent)
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.timing.session_expiry_s
        try:
            self.client.connect(
                self.target.host,
                self.target.port,
                keepalive=self.timing.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except Exception as exc:  # refused, unreachable, a name that does not resolve
            self.loop.call_soon(functools.partial(self._connect_failed, exc))
        else:
            self.loop.call_soon(self._connect_sent)

    def _connect_sent(self) -> None:
        self.connecting = False  # CONNACK next; paho's keepalive ends a CONNECT unanswered

    def _connect_failed(self, exc: Exception) -> None:
        self.connecting = False
        self.counters.connect_failures += 1
        if self.counters.connect_failures == 1:
            log.warning("hub %s: cannot connect to %s: %s", self.hub, self.target.address, exc)
        self._retry_later()

    def _retry_later(self) -> None:
        """paho's doubling backoff, with this hub's own random bounds (as the hub's uplink)."""
        low, high = self._delays
        self._backoff = low if not self._backoff else min(high, self._backoff * 2)
        self._connect_soon(self._backoff)

    # -- paho's socket callbacks (the loop's thread, or a connector's) -----------------------

    def _post(self, fn: Any) -> None:
        if self.loop.here():
            fn()
        else:
            self.loop.call_soon(fn)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._post(lambda: self.loop.socket_open(self, sock))

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._post(lambda: self.loop.socket_close(self, sock))

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._post(lambda: self.loop.register_write(self))

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._post(lambda: self.loop.unregister_write(self, sock))

    # -- paho's callbacks (the loop's thread) -----------------------------------------------

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("hub %s: broker refused the connection: %s", self.hub, reason_code)
            return
        if self.stopping:
            client.disconnect()
            return
        self.connected = self.ever_connected = True
        self.connection += 1
        self.counters.connects += 1
        self._backoff = 0.0
        self._since = time.time()
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        subscriptions = [
            (self.topics.receipt, SubscribeOptions(qos=1)),
            (self.topics.cmd_filter, SubscribeOptions(qos=1, retainAsPublished=True)),
            (self.receiver_status, SubscribeOptions(qos=1)),
        ]
        if self.timing.ping_s:
            subscriptions.append((self.topics.ping, SubscribeOptions(qos=0)))
        client.subscribe(subscriptions)
        self.publish_health()
        # What the broker acknowledged may be lost with it (a restart without persistence);
        # what it did not, paho sends again itself. Never sent yet: now.
        now = time.monotonic()
        for event_id, pending in list(self.ledger.pending.items()):
            if pending.acked or not pending.first_sent:
                self._publish_event(event_id, pending, now, resend=bool(pending.first_sent))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        was = self.connected
        self.connected = False
        self.connecting = False
        if was:
            self.counters.disconnects += 1
            self._since = time.time()
        if not self.stopping:
            self._retry_later()

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        pending = self.ledger.puback(mid, not reason_code.is_failure)
        if pending is not None and reason_code.is_failure:
            # Refused (an ACL, a quota): tried again by the receipt timeout, not in a loop.
            self.counters.refused += 1
            if self.counters.refused == 1:
                log.error("hub %s: broker refused event seq %d: %s", self.hub, pending.seq,
                          reason_code)  # fmt: skip

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic == self.topics.receipt:
            self._on_receipt(bytes(msg.payload))
        elif topic == self.receiver_status:
            self._on_receiver_status(bytes(msg.payload))
        elif topic == self.topics.ping:
            self.counters.echoes += 1
        elif topic.startswith(self.topics.base + "/cmd/"):
            self.counters.commands += 1
            expiry = getattr(msg.properties, "MessageExpiryInterval", None)
            self._command_handling().handle(
                topic.rsplit("/", 1)[1],
                bytes(msg.payload),
                bool(msg.retain),
                expiry if isinstance(expiry, int) else None,
            )

    def _on_receipt(self, payload: bytes) -> None:
        receipt = parse_receipt(payload)
        if receipt is None:
            self.counters.bad_receipts += 1
            return
        if self._gate is not None and self._gate.fault(receipt) is not None:
            self.counters.forged_receipts += 1
            self.counters.bad_receipts += 1
            return
        self.counters.receipts += 1
        self.ledger.receipted(receipt["ids"], time.monotonic())

    def _on_receiver_status(self, payload: bytes) -> None:
        """``{"state": "online", "session": ...}``: a receiver (re)subscribed. A session not
        seen before may have missed what the broker took meanwhile: send it all again."""
        try:
            status = loads_untrusted(payload, max_bytes=RECEIVER_STATUS_MAX_BYTES)
        except ValueError:
            status = None
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            self.counters.bad_receiver_status += 1
            return
        session = status.get("session")
        if status["state"] != "online" or session == self.receiver_session:
            return
        self.receiver_session = session if isinstance(session, str) else None
        self.resend_all()

    # -- events ---------------------------------------------------------------------------

    def make_event(self, kind: str, zone: str, source: str, data: dict[str, Any]) -> None:
        event_id, priority, payload = payloads.event_bytes(
            self.hub, self.ledger.last_seq + 1, kind, zone, source, data, self.signer
        )
        pending = self.ledger.made(event_id, priority, kind, payload)
        if self.connected:
            self._publish_event(event_id, pending, time.monotonic())

    def _publish_event(
        self, event_id: str, pending: Pending, now: float, *, resend: bool = False
    ) -> None:
        info = self.client.publish(self.topics.event(pending.kind), pending.payload, qos=1)
        self.ledger.published(event_id, pending, info.mid, now)
        self.counters.published += 1
        if resend:
            self.counters.resent += 1

    def resend_all(self) -> None:
        if not self.connected:
            return  # the next connect sends them
        now = time.monotonic()
        for event_id, pending in list(self.ledger.pending.items()):
            self._publish_event(event_id, pending, now, resend=bool(pending.first_sent))

    def resend_overdue(self, now: float) -> None:
        if self.connected:
            for event_id, pending in self.ledger.overdue(now, self.timing.receipt_timeout_s):
                self._publish_event(event_id, pending, now, resend=True)

    def telemetry(self) -> None:
        seq = self.ledger.last_seq + 1
        data = payloads.telemetry_data(seq, time.monotonic() - self._started)
        self.make_event(payloads.TELEMETRY, "hub", "fleet", data)

    def panic(self) -> None:
        self.make_event(payloads.PANIC, "guard-post", "panic-1", payloads.panic_data())

    # -- health, pings and commands ---------------------------------------------------------

    def publish_health(self) -> None:
        if not self.connected:
            return
        ledger = self.ledger
        sent = sum(1 for p in ledger.pending.values() if p.first_sent)
        undelivered: dict[str, int] = {}
        for pending in ledger.pending.values():
            name = _PRIORITY_NAMES.get(pending.priority, str(pending.priority))
            undelivered[name] = undelivered.get(name, 0) + 1
        health = payloads.health_object(
            hub=self.hub,
            started=self._started,
            last_seq=ledger.last_seq,
            pending=len(ledger.pending) - sent,
            sent=sent,
            undelivered=undelivered,
            in_flight=len(ledger.mids),
            resent=self.counters.resent,
            uplink=payloads.uplink_health("online", self._since, self.counters.disconnects),
            malformed_commands=self._commands.malformed if self._commands else 0,
            refused_commands=self._commands.refused if self._commands else 0,
            bad_receipts=self.counters.bad_receipts,
            forged_receipts=self.counters.forged_receipts,
        )
        self.client.publish(
            self.topics.health, payloads.health_bytes(health, self.signer), qos=1, retain=True
        )
        self.counters.health += 1

    def ping(self) -> None:
        if self.connected:
            self._pings += 1
            body = {"n": self._pings, "ts": round(time.time(), 3)}
            self.client.publish(self.topics.ping, json.dumps(body, separators=(",", ":")), qos=1)

    def _command_handling(self) -> Commands:
        if self._commands is None:
            self._commands = hub_commands(
                hub=self.hub,
                commune=self.target.commune,
                status=self.status,
                silence=lambda by: self.make_event("silenced", "hub", "remote", {"by": by}),
                answer=self._answer,
                commune_key=self.commune_key,
                hub_key=self.signer,
                replay_dir=self.replay_dir,
            )
        return self._commands

    def _answer(self, result: dict[str, Any]) -> None:
        if self.connected:
            self.client.publish(
                self.topics.cmd_result, json.dumps(result, separators=(",", ":")), qos=1
            )

    def status(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "commune": self.target.commune,
            "online": self.connected,
            "last_seq": self.ledger.last_seq,
            "unreceipted": len(self.ledger.pending),
            "simulated": "fleet",
        }

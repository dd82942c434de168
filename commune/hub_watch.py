"""The console's own MQTT connection: each hub's ``status``, ``health`` and ``cmd_result`` in,
operators' signed commands out.

The receiver's connection carries what must be stored before a receipt (events, snapshots);
this one carries what the duty desk shows and supervises. Its callbacks only queue what came;
the desk's thread takes the queue (``take``), so every write to the store happens there.
``status`` and ``health`` are retained: after a restart the broker hands over the latest of
each hub at once. Its session is clean: a ``cmd_result`` that arrives while the console is down
is not kept (the command's effect shows in the hub's events and health).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from commune.commands import CommandSendError, publish_command
from commune.validate import HUB_PATTERN
from core.events import utc_now_iso
from core.topics import RECEIVER_LEVEL, ROOT, parse_hub_topic
from gateway.broker import BrokerSettings, settings_tls_context

log = logging.getLogger(__name__)

WATCHED = ("status", "health", "cmd_result")
PUBLISH_WAIT_S = 5.0
MAX_REPORT_BYTES = 256 * 1024  # a health with cameras and buses is a few KiB


@dataclass(frozen=True)
class HubReport:
    """One message of a hub: ``what`` is "status", "health" or "cmd_result"."""

    hub: str
    what: str
    payload: bytes
    received_at: str


class HubWatch:
    """Subscribes to ``tuquan/v1/<commune>/+/{status,health,cmd_result}``; publishes commands."""

    def __init__(self, broker: BrokerSettings, commune: str) -> None:
        self.commune = commune
        self.broker = broker
        self.reports: queue.Queue[HubReport] = queue.Queue()
        self.connected = threading.Event()
        self.on_report: Any = None  # called (no arguments) after each report is queued
        self.dropped = 0  # messages not queued: a topic level no hub id has, or oversized
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{broker.client_id}-console-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        tls = settings_tls_context(broker)
        if tls is not None:
            client.tls_set_context(tls)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, command: Mapping[str, Any]) -> None:
        """Publish a signed command and wait for the broker's PUBACK; CommandSendError if the
        broker is not reachable or does not take it in time."""
        if not self._client.is_connected():
            raise CommandSendError(
                f"the console is not connected to the broker {self.broker.host}:{self.broker.port}"
            )
        info = publish_command(self._client, command)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CommandSendError(f"the command was not sent: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(PUBLISH_WAIT_S)
        except (RuntimeError, ValueError) as exc:
            raise CommandSendError(f"the command was not sent: {exc}") from None
        if not info.is_published():
            raise CommandSendError("the broker did not acknowledge the command in time")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("console: the broker refused the connection: %s", reason_code)
            return
        client.subscribe([(f"{ROOT}/{self.commune}/+/{what}", 1) for what in WATCHED])
        self.connected.set()
        log.info("console: watching the hubs of %s", self.commune)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            parts = parse_hub_topic(msg.topic)
            if parts is None or parts[0] != self.commune or parts[2] not in WATCHED:
                return
            if parts[1] == RECEIVER_LEVEL:  # the receivers' own status, not a hub's
                return
            if not HUB_PATTERN.fullmatch(parts[1]) or len(msg.payload) > MAX_REPORT_BYTES:
                self.dropped += 1  # not a hub's topic, or a message no hub sends: not kept
                return
            self.reports.put(HubReport(parts[1], parts[2], bytes(msg.payload), utc_now_iso()))
            if self.on_report is not None:
                self.on_report()
        except Exception:
            log.exception("console: error in on_message")

    def take(self, limit: int = 1000) -> list[HubReport]:
        """What came since the last call (at most ``limit``)."""
        out: list[HubReport] = []
        while len(out) < limit:
            try:
                out.append(self.reports.get_nowait())
            except queue.Empty:
                break
        return out

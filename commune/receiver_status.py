"""The receiver's retained status: ``{"state": "online", ...}`` where its communes' hubs hear it,
``offline`` in its will and on a clean stop.

A hub that hears ``online`` on its commune's ``receiver_status_topic`` re-sends every event it
holds without a receipt (gateway/dispatcher.py), so what a broker took while no receiver was
subscribed, or handed to a share group's member that died, does not wait for the hub's receipt
timeout. Where the receiver says it is in ``commune.scope``; a receiver of every commune says it
for a commune once it has receipted an event of it on the current connection (``announce``).

``"session_present": true`` says the broker kept the receiver's session across its absence: what
was published meanwhile is queued for it and comes now, so hubs re-send nothing (a re-send would
only arrive twice). Hubs then rely on their receipt timeout for what a full queue dropped.

paho's ``publish`` is thread-safe: ``online`` is called on paho's thread (the SUBACK),
``announce`` on the writer thread, ``offline`` by ``stop()``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from commune.scope import CommuneScope
from core.events import utc_now_iso
from core.topics import receiver_status_topic

log = logging.getLogger(__name__)


class ReceiverStatus:
    def __init__(self, client: mqtt.Client, scope: CommuneScope, client_id: str) -> None:
        self._client = client
        self.scope = scope
        self.client_id = client_id
        self.session = ""  # a fresh uuid4 hex per connection, in the "online" message
        self.session_present = False  # the broker kept this receiver's session (CONNACK)
        self._connection = 0
        self._announced: dict[str, int] = {}  # commune -> the connection it heard "online" on
        self._lock = threading.Lock()
        client.will_set(scope.will_topic, self.payload("offline"), qos=1, retain=True)

    def payload(self, state: str) -> str:
        body: dict[str, str | bool] = {"state": state, "receiver": self.client_id}
        if state == "online":
            body["session"] = self.session
            body["session_present"] = self.session_present
            body["ts"] = utc_now_iso()
        return json.dumps(body, separators=(",", ":"))

    def new_connection(self, connection: int, session_present: bool = False) -> None:
        """A connection was made: a new session id; every commune is to be announced again."""
        with self._lock:
            self._connection = connection
            self.session = uuid.uuid4().hex
            self.session_present = session_present

    def online(self) -> None:
        """The subscription is in place: say so on every status topic known up front."""
        for topic in self.scope.status_topics():
            self._publish(topic, self.payload("online"))

    def announce(self, communes: Iterable[str]) -> None:
        """A receiver of every commune just receipted events of these communes: say "online"
        on each one's topic not yet told on this connection."""
        if not self.scope.every:
            return
        with self._lock:
            connection = self._connection
            new = sorted(c for c in set(communes) if self._announced.get(c) != connection)
            for commune in new:
                self._announced[commune] = connection
        for commune in new:
            self._publish(receiver_status_topic(commune), self.payload("online"))

    def offline(self, wait_s: float) -> None:
        """Say "offline" wherever "online" was said (a clean disconnect discards the will)."""
        if not self._client.is_connected():
            return
        with self._lock:
            announced = list(self._announced)
        topics = dict.fromkeys(
            [*self.scope.status_topics(), *map(receiver_status_topic, announced)]
        )
        deadline = time.monotonic() + wait_s
        try:
            infos = [
                self._client.publish(topic, self.payload("offline"), qos=1, retain=True)
                for topic in topics
            ]
            for info in infos:
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            log.warning("offline status not published: %s", exc)

    def _publish(self, topic: str, payload: str) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("status on %s not queued: %s", topic, mqtt.error_string(info.rc))

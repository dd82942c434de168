"""MQTT clients for tests and benchmarks (paho-mqtt 2, MQTT 5).

    with Subscriber(broker, "tuquan/v1/c1/+/receipt") as sub:
        sub.publish("tuquan/v1/c1/hub-1/event/panic", payload)
        [msg] = sub.wait_for(1)
        assert msg.json()["ids"] == [event_id]

The subscription is confirmed (SUBACK) before the constructor returns, so nothing published
afterwards is missed. ``username``/``password`` and ``tls`` (an ``ssl.SSLContext``, with a client
certificate loaded if the broker wants one) reach a broker that authenticates; ``publish``
returns the broker's PUBACK reason code, so a test sees a publish the broker refused. Each
message keeps ``received_ns``, ``time.perf_counter_ns()`` taken first thing on arrival, so a
benchmark can compare it with a ``perf_counter_ns()`` of its own.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from testkit.waiting import Collected


class HasAddress(Protocol):
    host: str
    port: int


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    received_ns: int  # time.perf_counter_ns() when the message reached the subscriber

    def json(self) -> Any:
        return json.loads(self.payload)


def host_port(broker: HasAddress | str) -> tuple[str, int]:
    """(host, port) of a broker object or of a ``"host:port"`` string."""
    if isinstance(broker, str):
        host, _, port = broker.rpartition(":")
        return host, int(port)
    return broker.host, broker.port


class Subscriber:
    """Connects, subscribes at QoS 1 and collects every message, thread-safely."""

    def __init__(
        self,
        broker: HasAddress | str,
        *topic_filters: str,
        client_id: str = "",
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host_port(broker)
        self.timeout = timeout
        self._received: Collected[Message] = Collected(_describe, timeout)
        self._cond = threading.Condition()  # for the SUBACKs and PUBACKs
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        try:
            if not self._connected.wait(timeout):
                raise AssertionError(f"no CONNACK from {self.host}:{self.port} in {timeout} s")
            if self._connect_error:
                raise AssertionError(f"connect refused: {self._connect_error}")
            if topic_filters:
                self.subscribe(*topic_filters)
        except BaseException:
            self.close()
            raise

    # paho callbacks (paho's network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._connect_error = str(rc)
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = list(rcs)
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self._pubacks[mid] = rc

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter_ns()
        self._received.append(
            Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, now)
        )

    def subscribe(self, *topic_filters: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; fails if the broker refuses a filter."""
        result, mid = self.client.subscribe([(t, qos) for t in topic_filters])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"subscribe {topic_filters} failed: {mqtt.error_string(result)}")
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, self.timeout):
                raise AssertionError(f"no SUBACK for {topic_filters} in {self.timeout} s")
            codes = self._subacks.pop(mid)
        refused = [(t, str(c)) for t, c in zip(topic_filters, codes, strict=False) if c.is_failure]
        if refused:
            raise AssertionError(f"subscription refused: {refused}")

    @property
    def messages(self) -> list[Message]:
        return self._received.items()

    @property
    def count(self) -> int:
        """How many messages arrived so far (without copying them)."""
        return len(self._received)

    def clear(self) -> None:
        self._received.clear()

    def wait_until(
        self, predicate: Callable[[list[Message]], bool], timeout: float | None = None
    ) -> list[Message]:
        """Wait until ``predicate(messages)`` is true; returns the messages received so far."""
        return self._received.wait_until(predicate, timeout)

    def wait_for(self, count: int, timeout: float | None = None) -> list[Message]:
        """Wait for at least ``count`` messages; returns all received so far."""
        if count > 0:
            self._received.at(count - 1, timeout)
        return self.messages

    def message_at(self, index: int, timeout: float | None = None) -> Message:
        """The message at ``index`` (0 is the first received), once it is there (cheap to
        wait on: benchmarks do, after every press)."""
        return self._received.at(index, timeout)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,
    ) -> ReasonCode | None:
        """Publish and wait until it is sent (QoS 0) or acknowledged by the broker (QoS 1/2).

        Returns the reason code of the broker's PUBACK/PUBCOMP (``is_failure`` when the broker
        refused the message, e.g. 0x87 Not authorized from an ACL); None for QoS 0."""
        info = publish(
            self.client, topic, payload, qos, retain, self.timeout if timeout is None else timeout
        )
        with self._cond:
            reason = self._pubacks.pop(info.mid, None)
        return reason if qos > 0 else None

    def close(self) -> None:
        close_client(self.client)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(message: Message) -> str:
    return f"{message.topic}: {message.payload[:200]!r}"


def publish(
    client: mqtt.Client,
    topic: str,
    payload: bytes | str,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> mqtt.MQTTMessageInfo:
    """Publish with a connected, looping client and wait (bounded) for it to go out."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise AssertionError(f"publish to {topic} not completed within {timeout} s (rc {info.rc})")
    return info


def publish_once(
    broker: HasAddress | str,
    topic: str,
    payloads: bytes | str | Sequence[bytes | str],
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> None:
    """Connect a throwaway client, publish one payload or several in order, disconnect."""
    with Subscriber(broker, timeout=timeout) as sub:
        items = [payloads] if isinstance(payloads, bytes | str) else list(payloads)
        for payload in items:
            sub.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)


def connected_client(
    broker: HasAddress | str, name: str, *, max_inflight: int | None = None, timeout: float = 10.0
) -> mqtt.Client:
    """A connected paho client (MQTT 5, paho's defaults but ``max_inflight``), loop running.

    Its client id is ``name`` with a random suffix, so two of them never take each other's
    session over."""
    host, port = host_port(broker)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(timeout):
        close_client(client)
        raise AssertionError(f"could not connect to {host}:{port} within {timeout} s")
    return client


def close_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()

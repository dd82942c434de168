"""``tuquan doctor --broker``: connect to the broker as this hub and try what a hub must not be
allowed to do. A broker whose ACL lets a hub publish for another hub, read another hub's
receipts, subscribe to everything, write its own receipts or the receiver's status, is reported
with what it allowed; each refusal is what a correctly configured broker answers.

Every probe is harmless if the broker allows it: the probes publish no event, nothing retained,
and a payload that receivers drop (``{"doctor": ...}`` fails their validation).

Mosquitto grants every subscription and applies its ACL when it delivers (2.0 does), so a
subscription counts as refused unless something another client published comes through it:
the retained ``status`` of other hubs and of the receiver, within ``LISTEN_S``. On a broker with
no other client yet, a read probe cannot fail; the report says so.
"""

from __future__ import annotations

import json
import operator
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.topics import HubTopics, receiver_status_topic
from gateway.broker import BrokerSettings, settings_tls_context

PROBE_HUB = "tuquan-doctor-probe"  # the "other hub": a name no hub has
TIMEOUT_S = 10.0
LISTEN_S = 1.5  # how long a granted subscription is watched for others' messages


@dataclass(frozen=True)
class Probe:
    what: str  # what a hub must not do
    kind: str  # "publish" or "subscribe"
    topic: str
    must_be_refused: bool = True


@dataclass(frozen=True)
class Finding:
    probe: Probe
    refused: bool | None  # None: no answer within the timeout
    reason: str

    @property
    def ok(self) -> bool:
        return self.refused is not None and self.refused == self.probe.must_be_refused


def probes(commune: str, hub: str) -> list[Probe]:
    own, other = HubTopics(commune, hub), HubTopics(commune, PROBE_HUB)
    return [
        Probe("publish an event for another hub", "publish", other.event("panic")),
        Probe("publish another hub's status", "publish", other.status),
        Probe("write its own receipts", "publish", own.receipt),
        Probe("send itself a command", "publish", f"{own.base}/cmd/silence"),
        Probe("write the receiver's status", "publish", receiver_status_topic(commune)),
        Probe("read another hub's receipts", "subscribe", other.receipt),
        Probe("read another hub's commands", "subscribe", other.cmd_filter),
        Probe("read every topic (#)", "subscribe", "#"),
        Probe("publish its own ping (must be allowed)", "publish", own.ping, False),
        Probe("read its own receipts (must be allowed)", "subscribe", own.receipt, False),
    ]


def examine(settings: BrokerSettings, commune: str, hub: str) -> list[Finding]:
    """Run every probe on one MQTT 5 connection as the hub (a client id of its own, so the hub
    itself, if running, is not taken over). Raises ConnectionError if the broker cannot be
    reached or refuses the connection."""
    answers: dict[int, tuple[bool, str]] = {}
    done = threading.Condition()
    connected: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with done:
            connected.append(str(rc))
            done.notify_all()

    def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with done:
            answers[mid] = (bool(getattr(rc, "is_failure", False)), str(rc))
            done.notify_all()

    def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        with done:
            failure = any(getattr(c, "is_failure", False) for c in codes)
            answers[mid] = (failure, ", ".join(str(c) for c in codes))
            done.notify_all()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{settings.client_id}-doctor", protocol=mqtt.MQTTv5
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    tls = settings_tls_context(settings)
    if tls is not None:
        client.tls_set_context(tls)
    delivered: list[str] = []  # topics of messages that came through the probes' subscriptions

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with done:
            delivered.append(msg.topic)

    client.on_connect, client.on_publish, client.on_subscribe = on_connect, on_publish, on_subscribe
    client.on_message = on_message
    own = HubTopics(commune, hub).base + "/"
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        raise ConnectionError(f"cannot reach {settings.host}:{settings.port}: {exc}") from None
    client.loop_start()
    try:
        with done:
            if not done.wait_for(lambda: connected, TIMEOUT_S):
                raise ConnectionError("no answer to CONNECT")
            if connected[0] != "Success":
                raise ConnectionError(f"the broker refused the connection: {connected[0]}")
        payload = json.dumps({"doctor": "tuquan doctor probe; drop me"}).encode()
        findings = []
        for probe in probes(commune, hub):
            if probe.kind == "publish":
                mid = client.publish(probe.topic, payload, qos=1).mid
            else:
                mid = client.subscribe(probe.topic, qos=1)[1] or 0
            with done:
                answered = done.wait_for(partial(operator.contains, answers, mid), TIMEOUT_S)
            if not answered:
                findings.append(Finding(probe, None, "no answer"))
                continue
            refused, reason = answers[mid]
            if probe.kind == "subscribe" and not refused:
                time.sleep(LISTEN_S)
                with done:
                    foreign = [t for t in delivered if not t.startswith(own)]
                    delivered.clear()
                client.unsubscribe(probe.topic)
                if probe.must_be_refused:
                    refused = not foreign
                    reason = (
                        f"granted, and {foreign[0]} came through"
                        if foreign
                        else f"granted, nothing of another client came through in {LISTEN_S} s"
                    )
            findings.append(Finding(probe, refused, reason))
        return findings
    finally:
        client.disconnect()
        client.loop_stop()


def report(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        if f.refused is None:
            verdict = "NO ANSWER"
        elif f.ok:
            verdict = "ok (refused)" if f.refused else "ok (allowed)"
        else:
            verdict = "ALLOWED - fix the ACL" if not f.refused else "REFUSED - fix the ACL"
        lines.append(f"{verdict:24} {f.probe.what}: {f.probe.kind} {f.probe.topic} ({f.reason})")
    return "\n".join(lines)

"""Commands to a hub, signed by the commune for the person who gives them (docs/topics.md).

A command names its hub and commune, the operator, a fresh id, when it was issued and when it
expires, and a counter that rises with every command the commune signs. The counter lives in
``<receiver data dir>/command-counter``; each value is written durably *before* the command
that uses it is signed, so a crash can skip a value but never hand the same one out twice (a
hub refuses a counter it has seen). ``publish_command`` sets the MQTT 5 message expiry to the
command's lifetime, so the broker drops it unheard once it has expired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.errors import TuquanError
from core.files import write_durably
from core.signing import SigningKey
from core.topics import HubTopics
from gateway.broker import BrokerSettings, settings_tls_context

COUNTER_FILE = "command-counter"
DEFAULT_TTL_S = 120


class CounterError(TuquanError):
    """The counter file cannot be read or written: no command may be signed."""


class CommandSendError(TuquanError):
    """The command could not be handed to the broker."""


class CounterStore:
    """The commune's command counter, one decimal integer in a file: the last value handed out.

    ``reserve()`` writes the next value durably (under an exclusive lock, for two consoles on
    one data dir) and only then returns it. A missing file starts at 1; a damaged one is an
    error, not a restart at 1: the hubs would refuse every command as a replay, and silently
    reusing values is what the counter exists to prevent. Repair it by writing a number above
    the last one used (a hub's refusal names the highest counter it has seen)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(f".{path.name}.lock")

    def last(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise CounterError(f"{self.path}: cannot read the command counter ({exc})") from None
        if not text.isdigit():
            raise CounterError(
                f"{self.path}: damaged command counter {text[:20]!r}; write a number above the"
                " last counter used (a hub's refusal names the highest it has seen)"
            )
        return int(text)

    def reserve(self) -> int:
        """The next counter, already on disk (fsync'd) when it is returned."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            value = self.last() + 1
            try:
                write_durably(self.path, f"{value}\n".encode())
            except OSError as exc:
                raise CounterError(
                    f"{self.path}: cannot save the command counter ({exc})"
                ) from None
            return value
        finally:
            os.close(fd)  # releases the lock


def sign_command(
    commune_key: SigningKey,
    commune: str,
    hub: str,
    name: str,
    args: Mapping[str, Any],
    operator: str,
    ttl_s: int = DEFAULT_TTL_S,
    *,
    counter_store: CounterStore,
    now: float | None = None,
) -> dict[str, Any]:
    """The signed command object (purpose "command"), its counter reserved first."""
    if ttl_s < 1:
        raise ValueError("a command lives at least 1 s (its MQTT message expiry)")
    if not operator:
        raise ValueError("a command needs the operator who gives it")
    issued_at = round(time.time() if now is None else now, 3)
    command = {
        "name": name,
        "args": dict(args),
        "hub": hub,
        "commune": commune,
        "operator": operator,
        "id": uuid.uuid4().hex,
        "issued_at": issued_at,
        "expires_at": round(issued_at + ttl_s, 3),
        "counter": counter_store.reserve(),
    }
    return commune_key.sign("command", command)


def command_payload(command: Mapping[str, Any]) -> bytes:
    return json.dumps(command, separators=(",", ":"), ensure_ascii=False).encode()


def expiry_properties(command: Mapping[str, Any]) -> Properties:
    """PUBLISH properties with MessageExpiryInterval = the command's lifetime (whole seconds)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    lifetime = float(command["expires_at"]) - float(command["issued_at"])
    props.MessageExpiryInterval = max(1, int(lifetime))
    return props


def publish_command(client: mqtt.Client, command: Mapping[str, Any]) -> mqtt.MQTTMessageInfo:
    """Publish on ``cmd/<name>`` of its hub: QoS 1, not retained, with the message expiry."""
    topic = f"{HubTopics(str(command['commune']), str(command['hub'])).base}/cmd/{command['name']}"
    return client.publish(
        topic, command_payload(command), qos=1, retain=False, properties=expiry_properties(command)
    )


def send_command(
    settings: BrokerSettings,
    command: Mapping[str, Any],
    *,
    wait_s: float | None = None,
    connect_timeout_s: float = 10.0,
) -> dict[str, Any] | None:
    """Publish ``command`` and, with ``wait_s``, return the hub's cmd_result for it (None if
    none came in time). Raises CommandSendError when the broker cannot be reached or refuses."""
    topics = HubTopics(str(command["commune"]), str(command["hub"]))
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{settings.client_id}-cmd-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    tls = settings_tls_context(settings)
    if tls is not None:
        client.tls_set_context(tls)
    ready = threading.Event()
    results: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        if wait_s is None:
            ready.set()
        else:  # subscribe before publishing, so the result cannot be missed
            c.subscribe(topics.cmd_result, qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
        ready.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            result = json.loads(msg.payload)
            if isinstance(result, dict) and result.get("command_id") == command["id"]:
                results.put(result)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(settings.host, settings.port)
    except OSError as exc:
        raise CommandSendError(f"cannot reach {settings.host}:{settings.port}: {exc}") from None
    client.loop_start()
    try:
        if not ready.wait(connect_timeout_s):
            raise CommandSendError(f"no connection to {settings.host}:{settings.port}")
        info = publish_command(client, command)
        info.wait_for_publish(connect_timeout_s)
        if not info.is_published():
            raise CommandSendError("the broker did not acknowledge the command")
        if wait_s is None:
            return None
        try:
            return results.get(timeout=wait_s)
        except queue.Empty:
            return None
    finally:
        client.disconnect()
        client.loop_stop()

"""The generated commune broker (tuquan broker-config) run by a real Mosquitto: each role can do
what it needs and nothing else; tuquan doctor tells a correct broker from an open one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from commune.broker_config import BrokerConfigError, BrokerPlan, acl_text, write_broker_config
from core.topics import HubTopics, receiver_status_topic
from gateway.broker import BrokerSettings
from gateway.doctor import examine
from hw_sim.simulator import default_config_path
from testkit.broker import Broker, free_port, require_mosquitto
from testkit.hubs import COMMUNE, HUB
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

OTHER_HUB = "other-hub"
PLAN = BrokerPlan(
    commune=COMMUNE,
    hubs=(HUB, OTHER_HUB),
    receivers=("commune-receiver",),
    consoles=("console",),
    watchers=("watcher",),
)


def password(out: Path, user: str) -> str:
    return (out / "credentials" / user).read_text().strip()


def accepted(broker: Broker, topic: str, user: str, out: Path, retain: bool = False) -> bool:
    """Whether the broker takes a QoS 1 publish from ``user`` (its PUBACK's reason code)."""
    codes: list[Any] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{user}-probe", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password(out, user))
    client.on_publish = lambda _c, _u, _mid, rc, _p: codes.append(rc)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, b"online", qos=1, retain=retain)
        wait_until(lambda: codes, 10, f"PUBACK for {user} on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return not codes[0].is_failure


@pytest.fixture
def acl_broker(tmp_path: Path) -> tuple[Broker, Path]:
    """A Mosquitto using the generated password file and ACL (its own listener and logging)."""
    out = tmp_path / "broker-config"
    written = write_broker_config(PLAN, out)
    broker = Broker(
        tmp_path / "mosquitto",
        allow_anonymous=False,
        extra_config=f"password_file {written.password_file}\nacl_file {written.acl}",
    )
    broker.start()
    yield broker, out
    broker.stop()


def hub_settings(broker: Broker, out: Path, user: str = HUB) -> BrokerSettings:
    return BrokerSettings(
        host=broker.host,
        port=broker.port,
        client_id=user,
        username=user,
        password=password(out, user),
    )


def test_the_generated_config_runs_as_it_is(tmp_path: Path) -> None:
    """mosquitto.conf exactly as written (listener, users, ACL, persistence) starts and serves."""
    port = free_port()
    extra = ("user root",) if os.geteuid() == 0 else ()
    plan = BrokerPlan(
        commune=COMMUNE, hubs=(HUB,), port=port, persistence_dir=f"{tmp_path}/db/", extra=extra
    )
    (tmp_path / "db").mkdir()
    written = write_broker_config(plan, tmp_path / "out")
    assert (written.credentials[HUB].stat().st_mode & 0o777) == 0o600
    proc = subprocess.Popen(
        [require_mosquitto(), "-c", str(written.conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the generated broker never listened"
                time.sleep(0.1)
        settings = BrokerSettings(
            "127.0.0.1", port, HUB, username=HUB, password=password(tmp_path / "out", HUB)
        )
        assert all(f.ok for f in examine(settings, COMMUNE, HUB))
    finally:
        proc.terminate()
        proc.wait(10)


def test_doctor_finds_a_correct_broker_correct(acl_broker: tuple[Broker, Path]) -> None:
    broker, out = acl_broker
    # Another hub's retained status: what a read probe would see if the ACL let it.
    assert accepted(broker, HubTopics(COMMUNE, OTHER_HUB).status, OTHER_HUB, out, retain=True)
    findings = examine(hub_settings(broker, out), COMMUNE, HUB)
    assert [f.probe.what for f in findings if not f.ok] == []
    assert sum(f.refused is True for f in findings) == 8


def test_doctor_finds_an_open_broker_open(mosquitto: Broker) -> None:
    with Subscriber(mosquitto) as other:
        other.publish(HubTopics(COMMUNE, OTHER_HUB).status, b"online", retain=True)
    findings = examine(BrokerSettings(mosquitto.host, mosquitto.port, HUB), COMMUNE, HUB)
    allowed = {f.probe.what for f in findings if not f.ok}
    assert "publish an event for another hub" in allowed
    assert "read every topic (#)" in allowed
    assert "write its own receipts" in allowed
    assert "read another hub's receipts" not in allowed  # nothing retained there to see


def test_doctor_command_line(acl_broker: tuple[Broker, Path], tmp_path: Path) -> None:
    broker, out = acl_broker
    config = tmp_path / "hub.toml"
    text = default_config_path().read_text()
    config.write_text(text.replace("[broker]\n", f'[broker]\nusername = "{HUB}"\n', 1))
    env = {**os.environ, "TUQUAN_BROKER_PASSWORD": password(out, HUB)}
    run = [sys.executable, "-m", "tuquan", "doctor", "--config", str(config)]
    good = subprocess.run([*run, "--broker", broker.address], env=env, capture_output=True)
    assert good.returncode == 0, good.stdout.decode() + good.stderr.decode()
    assert b"refuses what a hub must not do" in good.stdout
    env["TUQUAN_BROKER_PASSWORD"] = "wrong"
    refused = subprocess.run([*run, "--broker", broker.address], env=env, capture_output=True)
    assert refused.returncode == 2 and b"refused the connection" in refused.stderr


def test_each_role_does_what_it_needs_and_nothing_else(acl_broker: tuple[Broker, Path]) -> None:
    broker, out = acl_broker
    hub, other = HubTopics(COMMUNE, HUB), HubTopics(COMMUNE, OTHER_HUB)

    def creds(user: str) -> dict[str, str]:
        return {"username": user, "password": password(out, user)}

    def ok(topic: str, user: str) -> bool:
        return accepted(broker, topic, user, out)

    with (
        Subscriber(broker, f"tuquan/v1/{COMMUNE}/#", **creds("watcher")) as watcher,
        Subscriber(broker, hub.receipt, hub.cmd_filter, **creds(HUB)) as at_hub,
    ):
        # The hub's own event and status reach the commune; another hub's name is refused.
        assert ok(hub.event("panic"), HUB)
        assert not ok(other.event("panic"), HUB)
        assert not ok(hub.receipt, HUB)
        # The receiver writes receipts and its status; the console writes commands.
        assert ok(hub.receipt, "commune-receiver")
        assert ok(receiver_status_topic(COMMUNE), "commune-receiver")
        assert ok(f"{hub.base}/cmd/ping", "console")
        # A watcher only reads; the receiver cannot command.
        assert not ok(f"{hub.base}/cmd/silence", "watcher")
        assert not ok(f"{hub.base}/cmd/silence", "commune-receiver")
        wait_until(lambda: len(at_hub.messages) == 2, 10, "the receipt and the command at the hub")
        assert sorted(m.topic for m in at_hub.messages) == [f"{hub.base}/cmd/ping", hub.receipt]
        wait_until(lambda: any(m.topic == hub.event("panic") for m in watcher.messages), 10)
        assert all(OTHER_HUB not in m.topic for m in watcher.messages)


def test_a_bad_plan_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="not a valid id"):
        write_broker_config(BrokerPlan(commune="Bad Commune", hubs=(HUB,)), tmp_path)
    with pytest.raises(BrokerConfigError, match="named twice"):
        write_broker_config(BrokerPlan(commune=COMMUNE, hubs=(HUB, HUB)), tmp_path)
    with pytest.raises(BrokerConfigError, match="together"):
        write_broker_config(BrokerPlan(commune=COMMUNE, hubs=(HUB,), cafile="ca.pem"), tmp_path)


def test_no_pattern_gives_every_user_a_hubs_rights() -> None:
    assert "pattern" not in acl_text(PLAN).replace("# ", "")

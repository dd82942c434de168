"""A receiver of several communes (a list, or ``+`` for every commune of its broker) against a
real Mosquitto and a real SQLite file: each event's commune comes from its topic, its receipt
goes to that commune's hub, snapshots keep one folder per commune, and hubs hear the receiver on
their own commune's status topic."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from commune.receiver import Receiver, ReceiverStats
from commune.scope import CommuneScope, ScopeError
from commune.store import EventStore
from core.events import Event
from core.topics import HubTopics, province_receiver_status_topic, receiver_status_topic
from testkit.broker import Broker
from testkit.mqtt import Subscriber
from testkit.receivers import Receivers, receipt_ids, wait_stats
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
A, B, C = HubTopics("xa-a", "hub-1"), HubTopics("xa-b", "hub-1"), HubTopics("xa-c", "hub-1")
JPEG = b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9"


def event(seq: int = 1, kind: str = "panic") -> Event:
    return dataclasses.replace(Event(kind=kind, zone="gate", source="panic-1"), seq=seq)


def status(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.messages if m.topic == topic]


@pytest.fixture
def receivers(mosquitto: Broker, tmp_path: Path) -> Any:
    with Receivers(mosquitto, "+", tmp_path / "rx" / "receiver.sqlite3") as started:
        yield started


def test_a_receiver_of_every_commune_stores_each_event_under_its_topics_commune(
    mosquitto: Broker, receivers: Receivers, tmp_path: Path
) -> None:
    with Subscriber(mosquitto, A.receipt, B.receipt) as hubs:
        receiver = receivers.start()
        assert receiver.client_id == "tuquan-receiver-+"
        first, second = event(1), event(1)
        hubs.publish(A.event("panic"), first.to_json(A.hub))
        hubs.publish(B.event("panic"), second.to_json(B.hub))
        hubs.wait_for(2)
        # Same hub id in two communes: two hubs, each receipted on its own commune's topic.
        by_topic = {m.topic: m.json() for m in hubs.messages}
        assert by_topic[A.receipt]["ids"] == [first.id]
        assert by_topic[B.receipt]["ids"] == [second.id]
        hubs.publish(A.snapshot(first.id), JPEG)
        wait_stats(receiver, lambda s: s.snapshots == 1)
    with EventStore(receiver.db_path) as store:
        assert {store.get(first.id)["commune"], store.get(second.id)["commune"]} == {  # type: ignore[index]
            "xa-a",
            "xa-b",
        }
    # One folder per commune: hub-1 of xa-a is not hub-1 of xa-b.
    assert (receiver.snapshot_dir / "xa-a" / "hub-1" / f"{first.id}.jpg").read_bytes() == JPEG


def test_topic_levels_that_are_not_communes_are_dropped_as_malformed(
    mosquitto: Broker, receivers: Receivers
) -> None:
    receiver = receivers.start()
    with Subscriber(mosquitto, "tuquan/v1/+/+/receipt") as outsider:
        for commune in ("_province", "Xa-A", "_receiver"):
            topics = HubTopics(commune, "hub-1")
            outsider.publish(topics.event("panic"), event().to_json("hub-1"))
            outsider.publish(topics.snapshot("e1"), JPEG)
        stats = wait_stats(receiver, lambda s: s.malformed + s.bad_snapshots == 6)
        assert (stats.stored, stats.receipts_sent, stats.malformed, stats.bad_snapshots) == (
            0,
            0,
            3,
            3,
        )
        # A genuine one after them is stored: one bad message costs that message only.
        outsider.publish(C.event("panic"), event().to_json(C.hub))
        outsider.wait_for(1)
        assert [m.topic for m in outsider.messages] == [C.receipt]


def test_a_commune_hears_the_receiver_of_every_commune_once_it_has_receipted_there(
    mosquitto: Broker, receivers: Receivers
) -> None:
    province = province_receiver_status_topic()
    with Subscriber(mosquitto, province, receiver_status_topic("xa-a")) as watch:
        receiver = receivers.start()
        watch.wait_until(lambda ms: any(m.topic == province for m in ms))
        assert status(watch, province)[0]["state"] == "online"
        assert status(watch, receiver_status_topic("xa-a")) == []  # unknown until a hub speaks
        with Subscriber(mosquitto, A.receipt) as hub:
            for seq in (1, 2):
                hub.publish(A.event("panic"), event(seq).to_json(A.hub))
                hub.wait_for(seq)
        wait_until(lambda: status(watch, receiver_status_topic("xa-a")), what="xa-a's status")
        [online] = status(watch, receiver_status_topic("xa-a"))  # once on this connection
        assert online["state"] == "online" and online["receiver"] == receiver.client_id
        # Retained: a hub of xa-a that connects later hears it at once.
        with Subscriber(mosquitto, receiver_status_topic("xa-a")) as late:
            [retained] = late.wait_for(1)
            assert retained.retain and retained.json()["session"] == online["session"]
        receivers.stop_all()
        watch.wait_until(lambda ms: len(status(watch, receiver_status_topic("xa-a"))) == 2)
        assert status(watch, receiver_status_topic("xa-a"))[-1]["state"] == "offline"
        assert status(watch, province)[-1]["state"] == "offline"


def test_a_receiver_of_a_list_subscribes_to_its_communes_only(
    mosquitto: Broker, tmp_path: Path
) -> None:
    topics = [receiver_status_topic("xa-a"), receiver_status_topic("xa-b")]
    with (
        Subscriber(mosquitto, *topics, province_receiver_status_topic()) as watch,
        Receivers(mosquitto, ["xa-a", "xa-b"], tmp_path / "rx.sqlite3") as receivers,
    ):
        receiver = receivers.start()
        assert receiver.client_id == "tuquan-receiver-xa-a+xa-b"
        watch.wait_for(3)  # online on each listed commune's topic and on the province's
        assert {m.topic for m in watch.messages} == {*topics, province_receiver_status_topic()}
        with Subscriber(mosquitto, A.receipt, B.receipt, C.receipt) as hubs:
            for topics_ in (C, A, B):
                hubs.publish(topics_.event("panic"), event().to_json(topics_.hub))
            hubs.wait_for(2)
            assert sorted(m.topic for m in hubs.messages) == [A.receipt, B.receipt]
        assert receiver.stats == ReceiverStats(received=2, stored=2, receipts_sent=2)


def test_a_commune_list_is_validated() -> None:
    assert CommuneScope.of("xa-a,xa-b").communes == ("xa-a", "xa-b")
    assert CommuneScope.of("+").every
    for bad, words in (
        ("xa-a,+", "'+' (every commune) stands alone"),
        ("xa-a,xa-a", "named twice"),
        ("Xa", "not a valid id"),
        ("xa-a,", "not a valid id"),
        ([], "name at least one commune"),
    ):
        with pytest.raises(ScopeError, match=re.escape(words)):
            CommuneScope.of(bad)
    with pytest.raises(ValueError, match="session_expiry_s"):
        Receiver("127.0.0.1", 1, "xa-a", "x.sqlite3", session_expiry_s=-1)
    # Long lists get a short client id, stable for the same list.
    many = [f"phuong-{i}" for i in range(40)]
    client_id = CommuneScope.of(many).default_client_id()
    assert client_id == CommuneScope.of(list(many)).default_client_id()
    assert len(client_id) < 60 and client_id.startswith("tuquan-receiver-phuong-0+39-")


def test_a_share_group_members_session_is_short_unless_configured() -> None:
    def expiry(**kwargs: Any) -> int:
        return Receiver("127.0.0.1", 1, "xa-a", "x.sqlite3", **kwargs).session_expiry_s

    assert expiry() == 24 * 3600
    assert expiry(share_group="police") == 60
    assert expiry(share_group="police", session_expiry_s=5) == 5


def publish_until_receipted(hub: Subscriber, topic: str, payload: bytes) -> None:
    """Re-send as a hub does until a receipt comes (the receiver may not be subscribed yet)."""
    deadline = time.monotonic() + 30
    while True:
        hub.publish(topic, payload)
        try:
            hub.wait_for(1, timeout=0.5)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def run_tuquan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tuquan", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("xa-a,+", "--commune: '+' (every commune) stands alone"),
        ("Xa-A", "--commune: 'Xa-A' is not a valid id"),
    ],
)
def test_tuquan_receive_refuses_a_bad_commune_argument(
    given: str, words: str, tmp_path: Path
) -> None:
    result = run_tuquan(
        "receive", "--commune", given, "--data-dir", str(tmp_path / "d"), cwd=tmp_path
    )
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not (tmp_path / "d").exists()


def test_the_console_serves_one_commune(tmp_path: Path) -> None:
    config = tmp_path / "rx.toml"
    config.write_text('[receiver]\ncommunes = ["xa-a", "xa-b"]\n')
    result = run_tuquan("console", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "tuquan console serves one commune, not 'xa-a+xa-b'" in result.stderr


def test_tuquan_receive_commune_plus_overrides_the_config(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = tmp_path / "rx.toml"
    config.write_text(f'[receiver]\ncommune = "xa-a"\n[broker]\nport = {mosquitto.port}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with Subscriber(mosquitto, C.receipt) as hub:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuquan", "receive", "--config", str(config)]
            + ["--commune", "+", "--data-dir", str(tmp_path / "d")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
            text=True,
        )
        try:
            sent = event()
            publish_until_receipted(hub, C.event("panic"), sent.to_json(C.hub))
            assert receipt_ids(hub.messages)[0] == sent.id
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["id"] == sent.id
    assert "tuquan-receiver-+" in err

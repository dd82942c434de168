"""Commune brokers bridged to a province broker with the files ``tuquan bridge-config`` writes
(real Mosquitto 2.0.11 processes, the province's ACL and passwords enforced), real simulated hubs
on the commune brokers and a receiver of every commune on the province's.

The bridge is cut under load in three ways: its link made silent, the same with the commune
broker killed meanwhile, the province broker stopped; and once with a queue too small to hold
the cut. Whatever the bridge held or dropped, every event the hubs committed ends up stored once
and receipted (receipts travel down the same bridge). Run with ``-s`` for the figures; the larger
run is ``python -m bench.bridge_cut``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from commune.receiver import Receiver
from core.topics import HubTopics, receiver_status_topic
from hw_sim.simulator import SimulatedHub
from testkit.bridge_cut import CutReport, province, run_cut
from testkit.bridged import BridgedBrokers, bridge_user
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

A, B = HubTopics("xa-a", "hub-1"), HubTopics("xa-b", "hub-1")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[BridgedBrokers]:
    with BridgedBrokers(tmp_path, ["xa-a", "xa-b"]) as bridged:
        wait_until(lambda: bridged.bridge_up("xa-a") and bridged.bridge_up("xa-b"), 60)
        yield bridged


def event_payload(event_id: str, hub: str = "hub-1") -> bytes:
    return json.dumps({"id": event_id, "hub": hub}).encode()


def test_the_bridge_routes_each_way_and_the_province_acl_holds(net: BridgedBrokers) -> None:
    a = net.communes["xa-a"]
    with (
        net.tap("tuquan/#") as tap,
        Subscriber(a, A.receipt, A.cmd_filter, receiver_status_topic("xa-a")) as hub,
        Subscriber(net.province, username=net.receiver_login[0],
                   password=net.receiver_login[1]) as receiver,
    ):  # fmt: skip
        hub.publish(A.event("panic"), event_payload("e-1"))
        tap.wait_until(lambda ms: any(m.topic == A.event("panic") for m in ms))
        receiver.publish(A.receipt, b'{"ids":["e-1"]}')
        receiver.publish(receiver_status_topic("xa-a"), b'{"state":"online"}', retain=True)
        receiver.publish(B.receipt, b'{"ids":["e-2"]}')  # not xa-a's: stays at the province
        hub.wait_until(
            lambda ms: {m.topic for m in ms} >= {A.receipt, receiver_status_topic("xa-a")}
        )
        # A marker up and back: anything looping would have come round by now.
        hub.publish(A.event("panic"), event_payload("marker"))
        tap.wait_until(lambda ms: b"marker" in b"".join(m.payload for m in ms))
        status_copies = [m for m in tap.messages if m.topic == receiver_status_topic("xa-a")]
        assert len(status_copies) == 1
        assert all(m.topic != B.receipt for m in hub.messages)
    # The retained status is the commune broker's too: a hub connecting later hears it at once.
    with Subscriber(a, receiver_status_topic("xa-a")) as late:
        assert late.wait_for(1)[0].retain


def test_a_command_keeps_its_message_expiry_across_the_bridge(net: BridgedBrokers) -> None:
    """MQTT 5 end to end: a hub whose clock is not set accepts a command only if its expiry
    came with it (gateway/command_check.py)."""
    arrived: list[tuple[str, int | None]] = []
    got = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        arrived.append((msg.topic, getattr(msg.properties, "MessageExpiryInterval", None)))
        got.set()

    with Subscriber(net.communes["xa-a"], A.cmd_filter) as hub:
        hub.client.on_message = on_message
        user, password = net.console_login
        with Subscriber(net.province, username=user, password=password) as console:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = 60
            console.client.publish(
                f"{A.base}/cmd/silence", b"{}", qos=1, properties=props
            ).wait_for_publish(10)
            assert got.wait(30)
    [(topic, expiry)] = arrived
    assert topic == f"{A.base}/cmd/silence" and expiry is not None and 0 < expiry <= 60


def test_a_bridge_user_writes_only_its_own_communes_topics(net: BridgedBrokers) -> None:
    user = bridge_user("xa-a")
    with (
        net.tap("tuquan/v1/+/+/event/+") as tap,
        Subscriber(
            net.province, username=user, password=net.passwords[user], client_id="impostor"
        ) as impostor,
    ):
        impostor.publish(B.event("panic"), event_payload("forged"))  # another commune's hub
        impostor.publish(A.event("panic"), event_payload("own"))
        tap.wait_until(lambda ms: any(b"own" in m.payload for m in ms))
        assert not any(b"forged" in m.payload for m in tap.messages)


# -- cuts under load ---------------------------------------------------------------------------


@pytest.fixture
def bridged_province(
    tmp_path: Path,
) -> Iterator[tuple[BridgedBrokers, Receiver, list[SimulatedHub]]]:
    with province(tmp_path) as parts:
        yield parts


def nothing_lost(report: CutReport) -> None:
    print(f"\n{report.text()}\n{report.json()}")
    assert report.events > 0 and report.copies > 0, "the cut caught no traffic"
    assert report.lost == 0
    assert report.stored == report.committed


def test_a_silent_link_under_load_is_held_by_the_bridge(
    bridged_province: tuple[BridgedBrokers, Receiver, list[SimulatedHub]],
) -> None:
    report = run_cut(*bridged_province, how="link", down_s=3)
    nothing_lost(report)
    # Sized by tuquan bridge-config for the load, the bridge's queue held the whole cut,
    # including what it had sent into the dead link before it noticed.
    assert report.dropped == 0
    assert report.held == report.copies and report.events_resent == 0


def test_a_commune_broker_killed_during_the_cut_loses_the_queue_and_the_hubs_resend_it(
    bridged_province: tuple[BridgedBrokers, Receiver, list[SimulatedHub]],
) -> None:
    report = run_cut(*bridged_province, how="link+crash", down_s=3)
    nothing_lost(report)
    assert report.events_resent > 0  # what the broker had not saved came by the hubs' re-sends


def test_a_province_broker_restart_under_load_loses_nothing(
    bridged_province: tuple[BridgedBrokers, Receiver, list[SimulatedHub]],
) -> None:
    nothing_lost(run_cut(*bridged_province, how="province", down_s=3))


def test_a_queue_too_small_for_the_cut_drops_and_the_hubs_resend_makes_it_good(
    tmp_path: Path,
) -> None:
    with province(tmp_path, queue_limit=100) as parts:
        report = run_cut(*parts, how="link", down_s=3)
    nothing_lost(report)
    assert report.dropped > 0 and report.events_resent > 0

"""Receivers sharing one subscription (MQTT 5 ``$share/<group>/...``) over one store, against a
real Mosquitto 2.0.11 and one SQLite file written by two processes.

What Mosquitto does with a member that died (measured here, docs/province.md): it goes on
handing the dead member its round-robin share while the member's session lives. With a long
session expiry those events wait in the dead session until the member comes back; with a short
one the broker drops them when the session expires, the group is down to the members alive, and
the hubs' re-sends bring what was dropped. Either way the hub holds every event until it is
receipted, so nothing is lost; the short expiry bounds how long an event can be stranded.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commune.locations import DB_FILENAME
from commune.receiver import Receiver
from commune.store import EventStore
from core.events import Event
from core.topics import HubTopics, receiver_status_topic
from testkit.broker import Broker
from testkit.hubs import COMMUNE, HUB, outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.receiver_process import ReceiverProcess
from testkit.receivers import Receivers, receipt_ids, wait_stats
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
GROUP = "police"


def events(n: int) -> list[Event]:
    return [
        dataclasses.replace(Event(kind="panic", zone="gate", source="panic-1"), seq=i + 1)
        for i in range(n)
    ]


def stored_ids(data_dir: Path) -> set[str]:
    with EventStore(data_dir / DB_FILENAME) as store:
        return set(store.ids())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The one store every member writes (``receiver.sqlite3``, WAL) and its commune key."""
    path = tmp_path / "rx"
    path.mkdir()
    return path


@pytest.fixture
def member_a(mosquitto: Broker, data_dir: Path) -> Iterator[Receiver]:
    """The member that stays: in this process, so its counts can be read."""
    with Receivers(mosquitto, COMMUNE, data_dir / DB_FILENAME) as receivers:
        yield receivers.start(share_group=GROUP, client_id="rx-a")


def member_b(broker: Broker, tmp_path: Path, data_dir: Path, expiry_s: int) -> ReceiverProcess:
    """The member that dies: ``tuquan receive`` in a process of its own, on the same store."""
    return ReceiverProcess.configured(
        broker,
        tmp_path / "rx-b",
        data_dir=data_dir,
        commune=COMMUNE,
        share_group=GROUP,
        client_id="rx-b",
        session_expiry_s=expiry_s,
    )


def kill_and_see_it_gone(member: ReceiverProcess, broker: Broker) -> None:
    """SIGKILL, then wait for its last will: the broker knows it is offline."""
    with Subscriber(broker, receiver_status_topic(COMMUNE)) as status:
        member.kill()
        status.wait_until(
            lambda ms: any(m.json() == {"state": "offline", "receiver": "rx-b"} for m in ms), 30
        )


def test_a_dead_member_with_a_long_session_strands_its_share_until_it_returns(
    mosquitto: Broker, member_a: Receiver, data_dir: Path, tmp_path: Path
) -> None:
    b = member_b(mosquitto, tmp_path, data_dir, expiry_s=3600)
    with b.start(), Subscriber(mosquitto, TOPICS.receipt) as hub:
        b.wait_subscribed()
        kill_and_see_it_gone(b, mosquitto)
        sent = events(20)
        for event in sent:  # published once each: no hub re-send in this measurement
            hub.publish(TOPICS.event("panic"), event.to_json(HUB))
        wait_stats(member_a, lambda s: s.stored == 10, 30)
        # Every other event went to the dead member's session: they are in no store.
        assert len(stored_ids(data_dir)) == 10
        b.start()  # the same client id: the session, and the 10 events in it, are still there
        wait_until(lambda: len(stored_ids(data_dir)) == 20, 30, "the stranded share stored")
        hub.wait_until(lambda ms: len(receipt_ids(ms)) == 20, 30)
        assert member_a.stats.stored == 10
        assert stored_ids(data_dir) == {e.id for e in sent}
    print(
        "\noffline member, session expiry 3600 s: of 20 events published while it was dead, "
        f"the live member got {member_a.stats.stored}; the other {20 - member_a.stats.stored} "
        "waited in the dead member's session until it came back"
    )


def test_a_short_session_expires_its_share_is_dropped_and_the_hubs_resend_brings_it(
    mosquitto: Broker, member_a: Receiver, data_dir: Path, tmp_path: Path
) -> None:
    b = member_b(mosquitto, tmp_path, data_dir, expiry_s=5)
    with b.start(), Subscriber(mosquitto, TOPICS.receipt) as hub:
        b.wait_subscribed()
        kill_and_see_it_gone(b, mosquitto)
        before = events(10)
        for event in before:
            hub.publish(TOPICS.event("panic"), event.to_json(HUB))
        assert "Expiring client rx-b" not in mosquitto.log_tail(200), "published too late"
        wait_stats(member_a, lambda s: s.stored == 5, 30)
        wait_until(
            lambda: "Expiring client rx-b due to timeout" in mosquitto.log_tail(200),
            30,
            "the dead member's session to expire",
        )
        after = [dataclasses.replace(e, seq=e.seq + 10) for e in events(10)]
        for event in after:  # the group is down to the live member: it gets them all
            hub.publish(TOPICS.event("panic"), event.to_json(HUB))
        wait_stats(member_a, lambda s: s.stored == 15, 30)
        receipted = set(receipt_ids(hub.messages))
        stranded = [e for e in before if e.id not in receipted]
        assert len(stranded) == 5
        # The hub re-sends what has no receipt (its receipt timeout, or a receiver's "online").
        for event in stranded:
            hub.publish(TOPICS.event("panic"), event.to_json(HUB))
        wait_stats(member_a, lambda s: s.stored == 20, 30)
        # The dead member's session is gone, and the 5 events in it with it.
        b.start()
        b.wait_subscribed(times=2)
        assert "session present: False" in b.log().rsplit("connected to", 1)[1]
    assert stored_ids(data_dir) == {e.id for e in before + after}
    print(
        "\noffline member, session expiry 5 s: before the expiry the live member got 5 of 10 "
        "and the dead one's 5 were dropped with its session; after it, the live member got "
        "10 of 10; the hub's re-send of the 5 unreceipted brought them in"
    )


def emit_until(hub: Any, stop: threading.Event, emitted: list[str]) -> None:
    """A hub under load: 5 telemetry events every 50 ms, as committed by its outbox."""
    while not stop.is_set():
        answer = hub.handle({"cmd": "emit", "kind": "telemetry", "count": 5})
        assert answer["ok"], answer
        emitted.extend(e["id"] for e in answer["events"])
        time.sleep(0.05)


def test_a_member_killed_mid_stream_leaves_nothing_stranded(
    mosquitto: Broker, data_dir: Path, tmp_path: Path
) -> None:
    members = [
        ReceiverProcess.configured(
            mosquitto,
            tmp_path / name,
            data_dir=data_dir,
            commune=COMMUNE,
            share_group=GROUP,
            client_id=name,
            session_expiry_s=3,
        )
        for name in ("rx-a", "rx-b")
    ]
    uplink = {"receipt_timeout_s": 5}
    with (
        members[0].start(),
        members[1],
        sim_hub(mosquitto, tmp_path / "hub", camera=False, sensor_bus=False, uplink=uplink) as hub,
    ):
        members[0].wait_subscribed()
        members[1].start().wait_subscribed()
        stop, emitted = threading.Event(), []  # type: ignore[var-annotated]
        load = threading.Thread(target=emit_until, args=(hub, stop, emitted), daemon=True)
        load.start()
        try:
            wait_until(lambda: len(stored_ids(data_dir)) >= 100, 60, "100 events stored")
            members[1].kill()  # mid-stream, for good
            at_kill = len(emitted)
            wait_until(lambda: len(emitted) >= at_kill + 200, 60, "200 more events")
        finally:
            stop.set()
            load.join(30)
        wait_until(
            lambda: outbox_counts(hub)["pending"] + outbox_counts(hub)["sent"] == 0,
            90,
            f"every event receipted; outbox {outbox_counts(hub)}",
        )
        health = hub.hub.health()
        resent, last_seq = health["resent"], health["last_seq"]
    with EventStore(data_dir / DB_FILENAME) as store:
        rows = [e for _, e in store.rows_after(0, 100_000) if e["hub"] == HUB]
    ids = [e["id"] for e in rows]
    assert len(ids) == len(set(ids)) == last_seq  # stored once each, none missing
    assert set(emitted) <= set(ids)
    assert sorted(e["seq"] for e in rows) == list(range(1, last_seq + 1))
    print(
        f"\nkill -9 of one of two members mid-stream (session expiry 3 s, receipt timeout 5 s): "
        f"{len(emitted)} events emitted, {at_kill} before the kill; {len(ids)} stored once each, "
        f"every one receipted; the hub re-sent {resent}"
    )

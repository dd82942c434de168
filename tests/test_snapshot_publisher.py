"""The snapshot publisher on its own: a real SnapshotStore on disk, an uplink that records what
it is given, and PUBACKs handed in by the test as paho would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.topics import HubTopics
from gateway.snapshots import SnapshotPublisher
from sensors.camera.snapshots import SnapshotStore
from testkit.waiting import wait_until

TOPICS = HubTopics("demo", "hub-1")


class Uplink:
    """What paho's publish returns (a mid), recorded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[int, str, bytes, bool, int]] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> int:
        with self.lock:
            mid = len(self.sent) + 1000
            self.sent.append((mid, topic, payload, retain, qos))
            return mid

    def ids(self) -> list[str]:
        with self.lock:
            return [topic.rsplit("/", 1)[1] for _, topic, _, _, _ in self.sent]

    def mids(self) -> list[int]:
        with self.lock:
            return [mid for mid, *_ in self.sent]


def jpeg(n: int, size: int = 1000) -> bytes:
    return b"\xff\xd8\xff" + bytes([n % 256]) * size + b"\xff\xd9"


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", max_bytes=100_000)


@pytest.fixture
def uplink() -> Uplink:
    return Uplink()


@pytest.fixture
def publisher(store: SnapshotStore, uplink: Uplink) -> Iterator[SnapshotPublisher]:
    pub = SnapshotPublisher(store, TOPICS, uplink, window=2)
    pub.start()
    yield pub
    pub.stop()


def ack_all(publisher: SnapshotPublisher, uplink: Uplink, upto: int) -> None:
    """PUBACK the first ``upto`` messages sent, waiting for each next one."""
    for i in range(upto):
        wait_until(lambda i=i: len(uplink.sent) > i, what=f"message {i + 1} sent")
        publisher.on_published(uplink.mids()[i], True)


def test_snapshots_taken_offline_go_out_in_order_after_the_connect_a_window_at_a_time(
    publisher: SnapshotPublisher, uplink: Uplink, store: SnapshotStore
) -> None:
    for n in range(5):
        publisher.put(f"ev-{n}", jpeg(n))
    assert uplink.sent == []
    publisher.on_connected()
    wait_until(lambda: len(uplink.sent) == 2, what="a window's worth")
    assert uplink.ids() == ["ev-0", "ev-1"]
    ack_all(publisher, uplink, 5)
    wait_until(lambda: publisher.health()["pending"] == 0, what="all acknowledged")
    assert uplink.ids() == [f"ev-{n}" for n in range(5)]
    _, topic, payload, retain, qos = uplink.sent[3]
    assert topic == TOPICS.snapshot("ev-3") and payload == jpeg(3) and (retain, qos) == (False, 1)
    assert list(store.dir.glob("*.pending")) == []
    assert publisher.stats.published == 5


def test_a_new_snapshot_goes_before_the_backlog(
    publisher: SnapshotPublisher, uplink: Uplink
) -> None:
    for n in range(4):
        publisher.put(f"ev-{n}", jpeg(n))
    publisher.on_connected()
    wait_until(lambda: len(uplink.sent) == 2, what="the first window")
    publisher.put("ev-9", jpeg(9))  # taken online: an incident happening now
    ack_all(publisher, uplink, 5)
    assert uplink.ids() == ["ev-0", "ev-1", "ev-9", "ev-2", "ev-3"]


def test_what_was_not_acknowledged_is_published_after_a_restart(
    store: SnapshotStore, uplink: Uplink
) -> None:
    first = SnapshotPublisher(store, TOPICS, uplink)
    first.start()
    for n in range(3):
        first.put(f"ev-{n}", jpeg(n))
    first.on_connected()
    wait_until(lambda: len(uplink.sent) == 3, what="all sent")
    first.on_published(uplink.mids()[1], True)  # only ev-1 acknowledged before the end
    wait_until(lambda: first.stats.published == 1, what="the PUBACK applied")
    first.stop()

    again = Uplink()
    second = SnapshotPublisher(store, TOPICS, again)
    second.start()
    try:
        second.on_connected()
        wait_until(lambda: len(again.sent) == 2, what="the unacknowledged ones")
        assert again.ids() == ["ev-0", "ev-2"]
    finally:
        second.stop()


def test_a_snapshot_the_cap_deleted_is_dropped_from_the_queue(
    tmp_path: Path, uplink: Uplink
) -> None:
    small = SnapshotStore(tmp_path / "small", max_bytes=2_500)
    pub = SnapshotPublisher(small, TOPICS, uplink)
    pub.start()
    try:
        for n in range(3):
            pub.put(f"ev-{n}", jpeg(n))  # 1 kB each: the first is deleted for the third
        pub.on_connected()
        wait_until(lambda: len(uplink.sent) == 2, what="what is left")
        assert uplink.ids() == ["ev-1", "ev-2"]
        assert pub.stats.lost == 1
        assert not (small.dir / "ev-0.pending").exists()
    finally:
        pub.stop()


def test_republish_sends_a_stored_snapshot_again_and_refuses_an_unknown_one(
    publisher: SnapshotPublisher, uplink: Uplink
) -> None:
    publisher.on_connected()
    publisher.put("ev-1", jpeg(1))
    ack_all(publisher, uplink, 1)
    assert publisher.republish("ev-1") is True
    wait_until(lambda: len(uplink.sent) == 2, what="published again")
    assert uplink.sent[1][1:3] == (TOPICS.snapshot("ev-1"), jpeg(1))
    assert publisher.republish("ev-2") is False
    assert publisher.republish("../outbox.sqlite3") is False


def test_a_rejected_snapshot_is_queued_again(publisher: SnapshotPublisher, uplink: Uplink) -> None:
    publisher.on_connected()
    publisher.put("ev-1", jpeg(1))
    wait_until(lambda: len(uplink.sent) == 1, what="sent")
    publisher.on_published(uplink.mids()[0], False)  # e.g. refused by an ACL
    wait_until(lambda: len(uplink.sent) == 2, what="sent again")
    publisher.on_published(uplink.mids()[1], True)
    wait_until(lambda: publisher.health()["pending"] == 0, what="acknowledged")
    assert publisher.stats.published == 1


def test_pubacks_of_other_messages_are_ignored(
    publisher: SnapshotPublisher, uplink: Uplink
) -> None:
    publisher.on_connected()
    publisher.put("ev-1", jpeg(1))
    wait_until(lambda: len(uplink.sent) == 1, what="sent")
    publisher.on_published(7, True)  # an event's PUBACK
    publisher.on_published(uplink.mids()[0], True)
    wait_until(lambda: publisher.stats.published == 1, what="acknowledged")
    assert publisher.health()["pending"] == 0 and len(uplink.sent) == 1


def test_event_pubacks_do_not_wake_the_snapshot_thread(
    store: SnapshotStore, uplink: Uplink
) -> None:
    idle = SnapshotPublisher(store, TOPICS, uplink)  # not started: its queue shows every wake
    for mid in range(1, 1001):  # the PUBACKs of 1,000 events, no snapshot in flight
        idle.on_published(mid, True)
    assert idle._queue.qsize() == 0 and not idle._pubacks


def test_pubacks_while_a_snapshot_is_in_flight_wake_the_thread_once_per_batch(
    store: SnapshotStore, uplink: Uplink
) -> None:
    idle = SnapshotPublisher(store, TOPICS, uplink)  # not started: its queue shows every wake
    idle._publishing = True  # a snapshot going out: from now on PUBACKs may be its own
    for mid in range(1, 501):
        idle.on_published(mid, True)
    assert idle._queue.qsize() == 1 and len(idle._pubacks) == 500


def test_a_snapshot_acknowledged_among_event_pubacks_is_published(
    publisher: SnapshotPublisher, uplink: Uplink
) -> None:
    publisher.put("ev-1", jpeg(1))
    publisher.on_connected()
    wait_until(lambda: len(uplink.sent) == 1, what="sent")
    for mid in range(1, 501):  # events acknowledged while the snapshot is in flight
        publisher.on_published(mid, True)
    publisher.on_published(uplink.mids()[0], True)
    wait_until(lambda: publisher.stats.published == 1, what="the snapshot acknowledged")
    wait_until(lambda: publisher.health()["in_flight"] == 0, what="nothing left in flight")

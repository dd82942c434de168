"""The commune receiver against a real Mosquitto and real SQLite files."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commune.receiver import Receiver, ReceiverStats
from commune.store import EventStore, ReceivedEvent
from core.events import Event
from core.topics import HubTopics
from testkit.mqtt import Subscriber
from testkit.receivers import receipt_ids, wait_stats

COMMUNE = "phuong-7"
HUB = "hub-1"
TOPICS = HubTopics(COMMUNE, HUB)
REPO = Path(__file__).resolve().parents[1]


def make_event(kind: str = "panic", seq: int = 1, **fields: Any) -> Event:
    """An event as the hub's outbox publishes it: committed, so it has its seq."""
    event = Event(kind=kind, zone="guard-post", source="panic-1", **fields)
    return dataclasses.replace(event, seq=seq)


def publish_until_receipted(
    hub: Subscriber, topic: str, payload: bytes, timeout: float = 20.0, every: float = 0.5
) -> None:
    """Re-send like a hub's outbox does until a receipt arrives (for a receiver that is still
    connecting, when a message published before its subscription would go nowhere)."""
    deadline = time.monotonic() + timeout
    while True:
        hub.publish(topic, payload)
        try:
            hub.wait_for(1, timeout=every)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def hub_topics() -> HubTopics:
    return TOPICS


def test_event_is_stored_once_and_receipted(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    receiver = start_receiver(on_new_event=seen.append)
    event = make_event(seq=41, data={"button": "red"})

    hub.publish(TOPICS.event(event.kind), event.to_json(HUB))

    [receipt] = hub.wait_for(1)
    assert receipt.topic == f"tuquan/v1/{COMMUNE}/{HUB}/receipt"
    assert receipt.json()["ids"] == [event.id]
    assert receiver.stats == ReceiverStats(received=1, stored=1, receipts_sent=1)
    assert seen == [event.to_dict(HUB)]
    with EventStore(db_path) as store:
        assert store.ids() == [event.id]
        row = store.get(event.id)
    assert row is not None
    assert row["payload"] == event.to_json(HUB).decode()
    assert {k: row[k] for k in event.to_dict(HUB)} == event.to_dict(HUB)
    assert row["commune"] == COMMUNE
    assert row["received_at"].endswith("Z")


def test_event_sent_three_times_is_stored_once_and_receipted_each_time(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    receiver = start_receiver(on_new_event=seen.append)
    event = make_event(kind="fire", seq=3)

    for attempt in range(1, 4):
        # The hub re-sends because it did not get (or lost) the receipt.
        hub.publish(TOPICS.event("fire"), event.to_json(HUB))
        receipts = hub.wait_for(attempt)

    assert receipt_ids(receipts) == [event.id] * 3
    assert receiver.stats == ReceiverStats(received=3, stored=1, duplicates=2, receipts_sent=3)
    assert [e["id"] for e in seen] == [event.id]
    with EventStore(db_path) as store:
        assert store.count() == 1


def test_malformed_messages_are_dropped_and_the_receiver_goes_on(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    receiver = start_receiver()
    good = make_event(seq=9)
    no_zone = good.to_dict(HUB)
    del no_zone["zone"]
    # A kind this receiver does not know is stored only with the hub's priority and cid
    # (tests/test_receiver_faults.py); without them it cannot be.
    unknown_kind = make_event().to_dict(HUB) | {"kind": "alien"}
    del unknown_kind["priority"], unknown_kind["cid"]
    bad = [
        (TOPICS.event("panic"), b"\xff\xfegarbage" * 100),
        (TOPICS.event("panic"), b"[1, 2, 3]"),
        (TOPICS.event("panic"), make_event().to_json("hub-2")),  # payload claims another hub
        (TOPICS.event("alien"), json.dumps(unknown_kind).encode()),
        (TOPICS.event("panic"), json.dumps(no_zone).encode()),
        (TOPICS.event("tamper"), make_event(kind="panic").to_json(HUB)),  # kind disagrees
        (TOPICS.event("panic"), make_event(id="x" * 65).to_json(HUB)),  # id too long
        (TOPICS.event("panic"), make_event(id="").to_json(HUB)),
    ]
    for topic, payload in bad:
        hub.publish(topic, payload)
    hub.publish(TOPICS.event("panic"), good.to_json(HUB))

    [receipt] = hub.wait_for(1)
    assert receipt.json()["ids"] == [good.id]
    stats = wait_stats(receiver, lambda s: s.malformed + s.stored == len(bad) + 1)
    assert stats == ReceiverStats(
        received=len(bad) + 1, stored=1, malformed=len(bad), receipts_sent=1
    )
    with EventStore(db_path) as store:
        assert store.ids() == [good.id]


def test_events_published_while_the_receiver_is_down_arrive_when_it_returns(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    first = start_receiver()
    before = make_event(kind="panic", seq=1)
    hub.publish(TOPICS.event("panic"), before.to_json(HUB))
    assert hub.wait_for(1)[0].json()["ids"] == [before.id]
    first.stop()  # the broker keeps the session: subscription and queue
    hub.clear()
    events = [make_event(kind="tamper", seq=n) for n in range(2, 5)]
    for event in events:
        hub.publish(TOPICS.event("tamper"), event.to_json(HUB))

    second = start_receiver()

    receipts = hub.wait_until(lambda msgs: len(receipt_ids(msgs)) >= 3)
    assert sorted(receipt_ids(receipts)) == sorted(e.id for e in events)
    # Exactly the three: the event acknowledged before the stop is not delivered again.
    stats = wait_stats(second, lambda s: s.stored == 3)
    assert (stats.received, stats.duplicates) == (3, 0)
    with EventStore(db_path) as store:
        assert store.ids() == sorted([before.id] + [e.id for e in events])


CRASHING_RECEIVER = textwrap.dedent(
    """
    import os, sys, threading
    from commune.receiver import Receiver

    def crash(self, receipts):
        os._exit(9)  # after the store commit, before any receipt leaves

    Receiver._send_receipts = crash
    host, port, commune, db = sys.argv[1:]
    receiver = Receiver(host, int(port), commune, db)
    receiver.start()
    assert receiver.wait_subscribed(10)
    print("subscribed", flush=True)
    threading.Event().wait(60)
    sys.exit(3)
    """
)


def test_crash_between_commit_and_receipt_then_restart_receipts_once(
    mosquitto: Any, hub: Subscriber, db_path: Path, start_receiver: Callable[..., Receiver]
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHING_RECEIVER,
            mosquitto.host,
            str(mosquitto.port),
            COMMUNE,
            str(db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "subscribed"
        event = make_event(kind="duress", seq=5)
        hub.publish(TOPICS.event("duress"), event.to_json(HUB))
        assert proc.wait(20) == 9
    finally:
        proc.kill()
        proc.wait()

    with EventStore(db_path) as store:
        assert store.ids() == [event.id]  # committed before the crash
    assert hub.messages == []  # ... and no receipt went out

    # Restarted, the receiver gets the unacknowledged message again from its session.
    receiver = start_receiver()
    [receipt] = hub.wait_for(1)
    assert receipt.json()["ids"] == [event.id]
    # The receipt can reach the hub before the receiver has counted it as sent.
    stats = wait_stats(receiver, lambda s: s.receipts_sent == 1)
    assert stats == ReceiverStats(received=1, duplicates=1, receipts_sent=1)

    # The hub, not knowing, may also re-send it: still one row, one more receipt.
    hub.publish(TOPICS.event("duress"), event.to_json(HUB))
    assert receipt_ids(hub.wait_for(2)) == [event.id, event.id]
    with EventStore(db_path) as store:
        assert store.count() == 1


def test_receiver_subscribes_again_after_a_broker_restart(
    mosquitto: Any, start_receiver: Callable[..., Receiver], db_path: Path
) -> None:
    receiver = start_receiver()
    mosquitto.kill()  # no persistence: the broker forgets the session and its subscription
    mosquitto.start()
    event = make_event(seq=1)
    with Subscriber(mosquitto, TOPICS.receipt) as hub:
        publish_until_receipted(hub, TOPICS.event("panic"), event.to_json(HUB))
        assert hub.messages[0].json()["ids"] == [event.id]
    assert receiver.stats.stored == 1


def test_run_receiver_prints_new_events_and_stops_on_sigterm(
    mosquitto: Any, hub: Subscriber, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        from commune.launch import run_receiver
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        host, port, commune, data_dir = sys.argv[1:]
        sys.exit(run_receiver(host, int(port), commune, data_dir))
        """
    )
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, mosquitto.host, str(mosquitto.port), COMMUNE, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        event = make_event(kind="smoke", seq=2)
        # The receiver subscribes in the background; like a hub, re-send until receipted.
        publish_until_receipted(hub, TOPICS.event("smoke"), event.to_json(HUB))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert [json.loads(line) for line in lines] == [event.to_dict(HUB)]
    with EventStore(data_dir / "receiver.sqlite3") as store:
        assert store.ids() == [event.id]


def test_store_keeps_each_id_once_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    a, b = make_event(seq=1), make_event(kind="heat", seq=2)

    def received(event: Event) -> ReceivedEvent:
        return ReceivedEvent.from_event(
            event,
            hub=HUB,
            commune=COMMUNE,
            payload=event.to_json(HUB).decode(),
            received_at="2025-01-01T00:00:00.000Z",
        )

    with EventStore(path) as store:
        assert store.store_batch([received(a), received(a)]) == [True, False]
        assert store.store_batch([]) == []
    with EventStore(path) as store:
        assert store.store_batch([received(b), received(a)]) == [True, False]
        assert store.count() == 2
        assert [r["id"] for r in store.recent(5)] == [b.id, a.id]
        assert store.get("nope") is None
        got = store.get(b.id)
        assert got is not None and got["kind"] == "heat" and got["cid"] == 114
        assert got["clock_synced"] is False and got["data"] == {}
        assert store.db.read_one("PRAGMA journal_mode")[0] == "wal"
        assert store.db.read_one("PRAGMA synchronous")[0] == 2  # FULL

"""The commune receiver against poison: hostile messages, a store that refuses one event, kinds
it does not know, crashes of its own, a broker that goes away. Real Mosquitto, real Receiver,
real SQLite files, real subprocesses.

Each poison message is published raw, then a genuine event: the genuine event must be stored
and receipted at once, the poison counted and never receipted, whether the receiver sees the
poison live or from its session after a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from commune.receiver import Receiver, ReceiverStats
from commune.store import EventStore, ReceivedEvent
from commune.validate import (
    MAX_DATA_BYTES,
    MAX_EVENT_DEPTH,
    MAX_ID_LENGTH,
    MAX_SEQ,
    MAX_ZONE_LENGTH,
    InvalidEvent,
    parse_event_message,
)
from core.events import Event
from core.topics import HubTopics, receiver_status_topic
from testkit.broker import running_broker
from testkit.hubs import outbox_counts, sim_hub
from testkit.mqtt import Subscriber
from testkit.receivers import Receivers, receipt_ids, wait_stats
from testkit.waiting import wait_until

COMMUNE = "phuong-9"
HUB = "hub-1"
TOPICS = HubTopics(COMMUNE, HUB)
REPO = Path(__file__).resolve().parents[1]
CLIENT_ID = "test-receiver"


def genuine(kind: str = "panic", seq: int = 1) -> Event:
    return Event(kind=kind, zone="guard-post", source="panic-1", seq=seq)


def event_dict(**overrides: Any) -> dict[str, Any]:
    """A valid panic as a hub publishes it, with some fields replaced."""
    return genuine(seq=7).to_dict(HUB) | overrides


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def with_text(**fields: str) -> bytes:
    """A valid event whose listed fields are replaced by raw JSON text (NaN, huge numbers)."""
    base = event_dict()
    text = json.dumps({k: v for k, v in base.items() if k not in fields})
    extra = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return (text[:-1] + ", " + extra + "}").encode()


def deeply_nested(levels: int) -> bytes:
    """A valid event whose data nests ``levels`` lists deep."""
    return with_text(data='{"deep": ' + "[" * levels + "]" * levels + "}")


def unknown_kind(**extra: Any) -> dict[str, Any]:
    body = event_dict(kind="glass_break", **extra)
    del body["priority"], body["cid"]
    return body | extra


# (topic kind, payload): each is refused at the edge, counted malformed, never receipted.
POISON: dict[str, tuple[str, bytes]] = {
    "seq 10**30": ("panic", raw(event_dict(seq=10**30))),
    "seq 2**63": ("panic", raw(event_dict(seq=2**63))),
    "seq 1.5": ("panic", raw(event_dict(seq=1.5))),
    "seq -5": ("panic", raw(event_dict(seq=-5))),
    "seq 0": ("panic", raw(event_dict(seq=0))),
    'seq "7"': ("panic", raw(event_dict(seq="7"))),
    "seq true": ("panic", raw(event_dict(seq=True))),
    "nested 100,000 levels": ("panic", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    "nested 20,000 levels, under the size limit": ("panic", deeply_nested(20_000)),
    # The event's object, data's, and 31 lists: one level past the limit.
    "nested one level too deep": ("panic", deeply_nested(MAX_EVENT_DEPTH - 1)),
    # An unterminated string full of brackets and escaped quotes: the depth scan must not be
    # fooled into counting them, nor take long over them.
    "unterminated string": ("panic", b'{"id": "' + b'[\\"' * 20_000),
    "1 MB payload": ("panic", raw(event_dict(data={"pad": "x" * 1_000_000}))),
    "data over its limit": ("panic", raw(event_dict(data={"pad": "x" * MAX_DATA_BYTES}))),
    "NaN in data": ("panic", with_text(data='{"level": NaN}')),
    "Infinity in data": ("panic", with_text(data='{"level": -Infinity}')),
    "1e400 in data": ("panic", with_text(data='{"level": 1e400}')),  # json.loads makes it inf
    "400-digit ts": ("panic", with_text(ts="9" * 400)),
    "400-digit ts string": ("panic", raw(event_dict(ts="9" * 400))),
    'ts "not a time"': ("panic", raw(event_dict(ts="not a time"))),
    "ts not UTC": ("panic", raw(event_dict(ts="2025-01-01T07:00:00+07:00"))),
    "ts without a zone": ("panic", raw(event_dict(ts="2025-01-01T00:00:00"))),
    "ts in year 1": ("panic", raw(event_dict(ts="0001-01-01T00:00:00Z"))),
    "ts in a 13th month": ("panic", raw(event_dict(ts="2026-13-01T00:00:00Z"))),
    "data a list": ("panic", raw(event_dict(data=[1, 2]))),
    "data null": ("panic", raw(event_dict(data=None))),
    "unknown kind without priority or cid": ("glass_break", raw(unknown_kind())),
    "unknown kind with priority 10": ("glass_break", raw(unknown_kind(priority=10, cid=140))),
    "unknown kind with cid 1000": ("glass_break", raw(unknown_kind(priority=0, cid=1000))),
    "wrong hub in payload": ("panic", raw(event_dict(hub="hub-2"))),
    "no hub in payload": ("panic", raw({k: v for k, v in event_dict().items() if k != "hub"})),
    "kind other than the topic's": ("tamper", raw(event_dict())),
    "kind not [a-z0-9_]": ("Panic!", raw(event_dict(kind="Panic!"))),
    "qualifier X": ("panic", raw(event_dict(qualifier="X"))),
    'clock_synced "yes"': ("panic", raw(event_dict(clock_synced="yes"))),
    "priority true": ("panic", raw(event_dict(priority=True))),
    "id of 65 characters": ("panic", raw(event_dict(id="x" * 65))),
    "id a number": ("panic", raw(event_dict(id=12345))),
    "zone of 10,000 characters": ("panic", raw(event_dict(zone="z" * 10_000))),
    "zone a lone surrogate": ("panic", with_text(zone='"\\ud800"')),
    "not UTF-8": ("panic", b"\xff\xfe" + raw(event_dict())),
    "a JSON list": ("panic", b"[1, 2, 3]"),
    "empty": ("panic", b""),
}


@pytest.fixture
def hub_topics() -> HubTopics:
    return TOPICS


@pytest.fixture
def receiver_options() -> dict[str, Any]:
    """Always the same client id, so a restarted receiver finds its session."""
    return {"client_id": CLIENT_ID}


def send_genuine_and_check(
    hub: Subscriber, receiver: Receiver, db_path: Path, seq: int = 1
) -> Event:
    """A genuine event after the poison: stored and receipted at once, alone."""
    good = genuine(seq=seq)
    hub.publish(TOPICS.event("panic"), good.to_json(HUB))
    receipts = hub.wait_for(1)
    assert receipt_ids(receipts) == [good.id]
    with EventStore(db_path) as store:
        assert store.ids() == [good.id]
    return good


@pytest.mark.parametrize("name", list(POISON))
def test_poison_costs_one_message(
    name: str,
    start_receiver: Callable[..., Receiver],
    hub: Subscriber,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kind, payload = POISON[name]
    receiver = start_receiver()

    hub.publish(TOPICS.event(kind), payload)
    send_genuine_and_check(hub, receiver, db_path)

    stats = wait_stats(receiver, lambda s: s.malformed + s.stored == 2)
    assert stats == ReceiverStats(received=2, stored=1, malformed=1, receipts_sent=1)
    # Logged once, with a reason, without a traceback.
    dropped = [r for r in caplog.records if "dropped malformed message" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].exc_info is None
    assert len(dropped[0].getMessage()) < 1000


@pytest.mark.parametrize(
    "name", ["seq 10**30", "nested 100,000 levels", "1 MB payload", "NaN in data", "empty"]
)
def test_poison_waiting_in_the_session_costs_one_message_after_a_restart(
    name: str, start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    kind, payload = POISON[name]
    start_receiver().stop()  # the broker keeps the session and queues for it
    hub.publish(TOPICS.event(kind), payload)

    second = start_receiver()
    send_genuine_and_check(hub, second, db_path)
    assert wait_stats(second, lambda s: s.malformed == 1).received == 2
    second.stop()

    # The poison was acknowledged: a third run is not handed it again.
    hub.clear()
    third = start_receiver()
    later = genuine(seq=2)
    hub.publish(TOPICS.event("panic"), later.to_json(HUB))
    assert receipt_ids(hub.wait_for(1)) == [later.id]
    assert wait_stats(third, lambda s: s.stored == 1).received == 1


def test_unknown_kind_is_stored_and_receipted_with_the_hubs_priority_and_cid(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    fed: list[dict[str, Any]] = []
    receiver = start_receiver(on_new_event=fed.append)
    newer = unknown_kind(priority=0, cid=140, novelty={"from": "a newer hub"})
    # A known kind whose payload disagrees with this receiver's table: the table wins.
    liar = event_dict(id="0000-liar", kind="tamper", priority=3, cid=999)

    hub.publish(HubTopics(COMMUNE, HUB).event("glass_break"), raw(newer))
    hub.publish(TOPICS.event("tamper"), raw(liar))

    receipts = hub.wait_until(lambda msgs: len(receipt_ids(msgs)) >= 2)
    assert sorted(receipt_ids(receipts)) == sorted([newer["id"], liar["id"]])
    assert wait_stats(receiver, lambda s: s.stored == 2).malformed == 0
    with EventStore(db_path) as store:
        stored = store.get(newer["id"])
        tamper = store.get(liar["id"])
    assert stored is not None and tamper is not None
    assert (stored["kind"], stored["priority"], stored["cid"]) == ("glass_break", 0, 140)
    assert (tamper["priority"], tamper["cid"]) == (1, 137)
    by_id = {e["id"]: e for e in fed}
    assert by_id[newer["id"]]["novelty"] == {"from": "a newer hub"}  # kept for newer readers
    assert by_id[liar["id"]]["cid"] == 137


class RefusingStore(EventStore):
    """A real store that cannot store one event id: its row carries a seq SQLite refuses
    (OverflowError, raised by the driver in the middle of the transaction). The first
    ``store_batch`` waits for ``gate``, so what arrives meanwhile forms one batch."""

    def __init__(self, path: Path, refuse: str, gate: threading.Event) -> None:
        super().__init__(path)
        self.refuse = refuse
        self.gate = gate
        self.batches: list[list[str]] = []

    def store_batch(self, items: Any) -> list[bool]:
        self.batches.append([i.id for i in items])
        if len(self.batches) == 1:
            self.gate.wait(10)
        return super().store_batch(items)

    def _row_values(self, item: ReceivedEvent) -> list[Any]:  # type: ignore[override]
        row = super()._row_values(item)
        return [10**30 if v == item.seq and item.id == self.refuse else v for v in row]


def test_an_event_the_store_refuses_is_quarantined_and_the_rest_of_its_batch_stored(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    gate = threading.Event()
    first, poison = genuine(seq=1), genuine(seq=2)
    others = [genuine(seq=n) for n in range(3, 7)]
    stores: list[RefusingStore] = []

    def factory(path: Path) -> RefusingStore:
        stores.append(RefusingStore(path, poison.id, gate))
        return stores[-1]

    receiver = start_receiver(store_factory=factory)
    hub.publish(TOPICS.event("panic"), first.to_json(HUB))
    wait_until(lambda: len(stores[0].batches) == 1, what="the writer waiting with one event")
    for event in [others[0], poison, *others[1:]]:
        hub.publish(TOPICS.event("panic"), event.to_json(HUB))
    wait_stats(receiver, lambda s: s.received == 6)
    gate.set()

    receipts = hub.wait_until(lambda msgs: len(receipt_ids(msgs)) >= 5)
    assert sorted(receipt_ids(receipts)) == sorted(e.id for e in [first, *others])
    stats = wait_stats(receiver, lambda s: s.quarantined == 1)
    assert stats == ReceiverStats(received=6, stored=5, quarantined=1, receipts_sent=2)
    # The batch of five failed whole, then went in one at a time.
    batches = stores[0].batches
    assert batches[1] == [e.id for e in [others[0], poison, *others[1:]]]
    assert [len(b) for b in batches[2:]] == [1] * 5

    # The next genuine event goes straight through, and the poison is never receipted.
    hub.clear()
    after = genuine(seq=7)
    hub.publish(TOPICS.event("panic"), after.to_json(HUB))
    assert receipt_ids(hub.wait_for(1)) == [after.id]
    with EventStore(db_path) as store:
        assert sorted(store.ids()) == sorted(e.id for e in [first, *others, after])
        [kept] = store.quarantined()
    assert kept["topic"] == TOPICS.event("panic")
    assert kept["payload"] == poison.to_json(HUB)
    assert kept["reason"].startswith("OverflowError")
    assert kept["received_at"].endswith("Z") and kept["times"] == 1


class FullDiskStore(EventStore):
    """A real store whose first ``failures`` commits fail as a full disk does."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def store_batch(self, items: Any) -> list[bool]:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().store_batch(items)


def test_a_full_disk_is_retried_not_quarantined(
    start_receiver: Callable[..., Receiver], hub: Subscriber, db_path: Path
) -> None:
    receiver = start_receiver(store_factory=lambda path: FullDiskStore(path, failures=2))
    event = genuine()
    hub.publish(TOPICS.event("panic"), event.to_json(HUB))
    assert receipt_ids(hub.wait_for(1)) == [event.id]
    stats = wait_stats(receiver, lambda s: s.stored == 1)
    assert stats.quarantined == 0 and stats.malformed == 0


class FailingReceiver(Receiver):
    """A receiver whose receipt publishing fails once with a fault of its own."""

    failed = False

    def _send_receipts(self, receipts: dict[str, list[str]]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a fault inside the receiver")
        super()._send_receipts(receipts)


def test_a_batch_whose_handling_raises_is_still_acknowledged(
    mosquitto: Any, hub: Subscriber, db_path: Path, start_receiver: Callable[..., Receiver]
) -> None:
    failing = FailingReceiver(mosquitto.host, mosquitto.port, COMMUNE, db_path, client_id=CLIENT_ID)
    failing.start()
    try:
        assert failing.wait_subscribed(10)
        event = genuine()
        hub.publish(TOPICS.event("panic"), event.to_json(HUB))
        wait_until(lambda: failing.failed and failing.stats.stored == 1, what="the failed batch")
        later = genuine(seq=2)
        hub.publish(TOPICS.event("panic"), later.to_json(HUB))
        assert receipt_ids(hub.wait_for(1)) == [later.id]
    finally:
        failing.stop()
    # Acknowledged: the next run of the same session is not handed the first event again.
    hub.clear()
    again = start_receiver()
    last = genuine(seq=3)
    hub.publish(TOPICS.event("panic"), last.to_json(HUB))
    assert receipt_ids(hub.wait_for(1)) == [last.id]
    assert again.stats.received == 1


# -- the status topic ----------------------------------------------------------------------


def statuses(sub: Subscriber, count: int) -> list[dict[str, Any]]:
    return [m.json() for m in sub.wait_for(count, timeout=15)]


def test_back_with_the_session_a_persistent_broker_kept_it_says_so(
    tmp_path: Path, hub_topics: HubTopics
) -> None:
    # Hubs re-send nothing then: what the receiver missed is queued for it, and comes now.
    with (
        running_broker(tmp_path / "broker", persistent=True) as broker,
        Receivers(broker, hub_topics.commune, tmp_path / "store.sqlite3") as receivers,
    ):
        receivers.start()
        topic = receiver_status_topic(hub_topics.commune)
        with Subscriber(broker, topic) as sub:
            assert statuses(sub, 1)[0]["session_present"] is False
        broker.stop()  # a clean stop: the broker saves the receiver's session
        broker.start()

        def retained_status() -> dict[str, Any]:
            with Subscriber(broker, topic) as sub:
                return statuses(sub, 1)[0]

        wait_until(lambda: retained_status().get("session_present") is True, 20, "back with it")


def test_online_after_connecting_and_again_after_a_broker_restart(
    mosquitto: Any, start_receiver: Callable[..., Receiver]
) -> None:
    topic = receiver_status_topic(COMMUNE)
    receiver = start_receiver()
    with Subscriber(mosquitto, topic) as sub:
        [first] = statuses(sub, 1)
    assert first["state"] == "online" and first["receiver"] == CLIENT_ID
    assert len(first["session"]) == 32 and first["ts"].endswith("Z")
    assert first["session_present"] is False  # a new session: hubs re-send what it lacks

    mosquitto.kill()  # no persistence: the retained status is gone with it
    mosquitto.start()
    wait_until(lambda: receiver.wait_subscribed(0.1), 15, "receiver subscribed again")
    with Subscriber(mosquitto, topic) as sub:
        [again] = statuses(sub, 1)
        assert again["state"] == "online" and again["session"] != first["session"]
        assert again["session_present"] is False  # the broker forgot it: hubs must re-send

        receiver.stop()
        [_, last] = statuses(sub, 2)
    assert last == {"state": "offline", "receiver": CLIENT_ID}
    with Subscriber(mosquitto, topic) as sub:
        assert statuses(sub, 1) == [last]  # retained


KILLABLE_RECEIVER = """
import sys, threading
from commune.receiver import Receiver
host, port, commune, db = sys.argv[1:]
receiver = Receiver(host, int(port), commune, db, client_id="killed", keepalive=1)
receiver.start()
threading.Event().wait(60)
"""


def test_the_last_will_says_offline_when_the_receiver_dies(mosquitto: Any, tmp_path: Path) -> None:
    topic = receiver_status_topic(COMMUNE)
    with Subscriber(mosquitto, topic) as sub:
        args = [mosquitto.host, str(mosquitto.port), COMMUNE, str(tmp_path / "r.sqlite3")]
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RECEIVER, *args], cwd=REPO)
        try:
            assert statuses(sub, 1)[0]["state"] == "online"
            proc.kill()
            proc.wait(10)
            assert statuses(sub, 2)[1] == {"state": "offline", "receiver": "killed"}
        finally:
            proc.kill()
            proc.wait()


# -- tuquan receive as a process -----------------------------------------------------------


def receive_command(broker: Any, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tuquan",
        "receive",
        "--broker",
        f"{broker.host}:{broker.port}",
        "--commune",
        COMMUNE,
        "--data-dir",
        str(data_dir),
    ]


def test_sigterm_stops_the_receiver_with_the_broker_gone_and_the_store_failing(
    mosquitto: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    err_path = tmp_path / "receiver.err"
    with Subscriber(mosquitto, receiver_status_topic(COMMUNE)) as sub, err_path.open("wb") as err:
        proc = subprocess.Popen(
            receive_command(mosquitto, data_dir),
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )
        try:
            assert statuses(sub, 1)[0]["state"] == "online"
            # Another process holds the write lock: every commit fails as "database is
            # locked", and the writer sits in its retry loop.
            lock = sqlite3.connect(data_dir / "receiver.sqlite3", isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            sub.publish(TOPICS.event("panic"), genuine().to_json(HUB))
            wait_until(
                lambda: b"failed (OperationalError" in err_path.read_bytes(), 20, "store failing"
            )
            mosquitto.stop()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, err_path.read_text()[-2000:]
            lock.close()
        finally:
            proc.kill()
            proc.wait()
    assert "stopped" in err_path.read_text()


class ResendingHubs:
    """Hubs as their outboxes behave: every event is published, and published again every
    ``every`` seconds until a receipt names it. Runs a thread until ``close``."""

    def __init__(self, broker: Any, events: dict[str, tuple[str, bytes]], every: float) -> None:
        self.every = every
        self._events = events
        self._lock = threading.Lock()
        self._unreceipted: dict[str, float] = {}  # id -> when last sent (0: never)
        self._unsent = list(events)
        self._done = threading.Event()
        self._sub = Subscriber(broker)
        self.client = self._sub.client
        self.client.on_message = self._on_message
        self._sub.subscribe(f"tuquan/v1/{COMMUNE}/+/receipt")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            for event_id in json.loads(msg.payload)["ids"]:
                self._unreceipted.pop(event_id, None)

    def _run(self) -> None:
        while not self._done.wait(0.02):
            now = time.monotonic()
            with self._lock:
                fresh, self._unsent = self._unsent[:5], self._unsent[5:]
                for event_id in fresh:
                    self._unreceipted[event_id] = 0.0
                due = [i for i, sent in self._unreceipted.items() if now - sent >= self.every]
                for event_id in due:
                    self._unreceipted[event_id] = now
            for event_id in due:
                topic, payload = self._events[event_id]
                self.client.publish(topic, payload, qos=1)

    @property
    def unreceipted(self) -> int:
        with self._lock:
            return len(self._unreceipted) + len(self._unsent)

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._sub.close()


def feed_ids(path: Path) -> list[str]:
    """Ids in the feed file; a line torn by a SIGKILL is skipped (it is printed again)."""
    ids = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            ids.append(json.loads(line)["id"])
    return ids


def test_the_alert_feed_misses_nothing_across_sigkills(mosquitto: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("TUQUAN_FEED_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir, feed_path, err_path = tmp_path / "data", tmp_path / "feed.jsonl", tmp_path / "err"
    hubs = [f"hub-{n}" for n in range(4)]
    events: dict[str, tuple[str, bytes]] = {}
    for seq in range(1, 501):
        for hub_id in hubs:
            kind = rng.choice(["panic", "tamper", "fire"])
            event = Event(kind=kind, zone="z", source="s", seq=seq)
            events[event.id] = (HubTopics(COMMUNE, hub_id).event(event.kind), event.to_json(hub_id))

    def start() -> subprocess.Popen[bytes]:
        with feed_path.open("ab") as out, err_path.open("ab") as err:
            return subprocess.Popen(
                receive_command(mosquitto, data_dir),
                stdout=out,
                stderr=err,
                cwd=REPO,
                env=os.environ | {"PYTHONPATH": str(REPO)},
            )

    proc = start()
    senders = ResendingHubs(mosquitto, events, every=1.0)
    kills = rng.randint(5, 8)
    try:
        with Subscriber(mosquitto, receiver_status_topic(COMMUNE)) as status:

            def wait_online(runs: int) -> None:
                """Until ``runs`` receiver connections have said "online"."""
                status.wait_until(
                    lambda msgs: len({m.json().get("session") for m in msgs} - {None}) >= runs,
                    timeout=20,
                )

            wait_online(1)
            senders.start()
            for run in range(2, kills + 2):
                time.sleep(rng.uniform(0.05, 0.5))  # a random moment, not a synchronisation
                proc.kill()
                proc.wait(10)
                proc = start()
                wait_online(run)
            assert senders.unreceipted > 0, "the kills came after the traffic"
            wait_until(lambda: senders.unreceipted == 0, 60, f"all receipted (seed {seed})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        senders.close()
        proc.kill()
        proc.wait()

    with EventStore(data_dir / "receiver.sqlite3") as store:
        stored = set(store.ids())
    printed = feed_ids(feed_path)
    assert stored == set(events), f"seed {seed}"
    missing = stored - set(printed)
    assert not missing, f"{len(missing)} stored events never printed (seed {seed})"
    assert len(printed) >= len(events)


CRASH_BEFORE_PRINTING = """
import os, sys
from commune.launch import run_receiver
from commune.receiver import Receiver

feed_runs = []
real_run_feed = Receiver._run_feed

def crash_after_the_commit(self, store):
    feed_runs.append(1)
    if len(feed_runs) == 2:  # the first run is the catch-up at start, the second the batch's
        os._exit(9)  # the event is committed, its line never printed
    real_run_feed(self, store)

Receiver._run_feed = crash_after_the_commit
host, port, commune, data_dir = sys.argv[1:]
sys.exit(run_receiver(host, int(port), commune, data_dir))
"""


def test_an_event_stored_but_not_printed_before_a_crash_is_printed_at_the_next_start(
    mosquitto: Any, hub: Subscriber, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    args = [mosquitto.host, str(mosquitto.port), COMMUNE, str(data_dir)]
    with Subscriber(mosquitto, receiver_status_topic(COMMUNE)) as status:
        crashing = subprocess.Popen(
            [sys.executable, "-c", CRASH_BEFORE_PRINTING, *args], stdout=subprocess.PIPE, cwd=REPO
        )
        try:
            status.wait_for(1, timeout=15)
            event = genuine(kind="duress")
            hub.publish(TOPICS.event("duress"), event.to_json(HUB))
            out, _ = crashing.communicate(timeout=20)
        finally:
            crashing.kill()
            crashing.wait()
    assert crashing.returncode == 9 and out == b""
    with EventStore(data_dir / "receiver.sqlite3") as store:
        assert store.ids() == [event.id]
    assert hub.messages == []

    proc = subprocess.Popen(
        receive_command(mosquitto, data_dir),
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    try:
        # The broker delivers the unacknowledged message again: a duplicate, receipted.
        assert receipt_ids(hub.wait_for(1, timeout=20)) == [event.id]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert [json.loads(line) for line in out.splitlines()] == [event.to_dict(HUB)]


def test_the_feed_position_survives_a_reopen_and_an_older_file_starts_after_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.sqlite3"

    def received(event: Event) -> ReceivedEvent:
        return ReceivedEvent.from_event(
            event, hub=HUB, commune=COMMUNE, payload=event.to_json(HUB).decode(), received_at="x"
        )

    with EventStore(path) as store:
        assert store.feed_position() == 0
        store.store_batch([received(genuine(seq=n)) for n in (1, 2, 3)])
        assert [row["seq"] for _, row in store.rows_after(1, 10)] == [2, 3]
        store.set_feed_position(2)
    with EventStore(path) as store:
        assert store.feed_position() == 2
        assert store.db.read_one("PRAGMA synchronous")[0] == 2  # FULL again
        # A file from before the feed: no meta table.
        with store.db.tx() as conn:
            conn.execute("DROP TABLE meta")
    with EventStore(path) as store:
        assert store.feed_position() == 3


# -- the limits themselves --------------------------------------------------------------------


def test_each_limit_accepts_its_bound_and_refuses_one_past_it() -> None:
    """A limit checked one-sidedly would refuse genuine events at its edge, which a hub would
    then re-send forever: each bound itself passes, one past it does not."""

    def accepted(kind: str, payload: bytes) -> bool:
        try:
            parse_event_message(TOPICS.event(kind), payload, commune=COMMUNE, received_at="x")
        except InvalidEvent:
            return False
        return True

    pad = MAX_DATA_BYTES - len('{"pad":""}')  # data as stored: compact, sorted keys
    cases = {
        "depth": (deeply_nested(MAX_EVENT_DEPTH - 2), deeply_nested(MAX_EVENT_DEPTH - 1)),
        "seq": (raw(event_dict(seq=MAX_SEQ)), raw(event_dict(seq=MAX_SEQ + 1))),
        "seq low": (raw(event_dict(seq=1)), raw(event_dict(seq=0))),
        "data": (
            raw(event_dict(data={"pad": "x" * pad})),
            raw(event_dict(data={"pad": "x" * (pad + 1)})),
        ),
        "id": (
            raw(event_dict(id="i" * MAX_ID_LENGTH)),
            raw(event_dict(id="i" * (MAX_ID_LENGTH + 1))),
        ),
        "zone": (
            raw(event_dict(zone="z" * MAX_ZONE_LENGTH)),
            raw(event_dict(zone="z" * (MAX_ZONE_LENGTH + 1))),
        ),
        "ts year": (
            raw(event_dict(ts="1970-01-01T00:00:00Z")),
            raw(event_dict(ts="1969-12-31T23:59:59Z")),
        ),
        "priority": (
            raw(unknown_kind(priority=9, cid=999)),
            raw(unknown_kind(priority=9, cid=1000)),
        ),
    }
    for name, (at_bound, past_it) in cases.items():
        kind = "glass_break" if name == "priority" else "panic"
        assert accepted(kind, at_bound), f"{name}: the bound itself is refused"
        assert not accepted(kind, past_it), f"{name}: one past the bound is accepted"


# -- a real hub's panic after poison ----------------------------------------------------------

SIM_COMMUNE, SIM_HUB = "demo", "sim-hub"  # the simulated hub's (hw_sim/sim_hub.toml)
SIM_TOPICS = HubTopics(SIM_COMMUNE, SIM_HUB)


def sim_panic_delivered(sim: Any, db_path: Path, timeout: float = 15.0) -> None:
    """The simulated hub's panic is in the commune's store and its receipt reached the hub, well
    inside the hub's 30 s receipt timeout (so not by a timed re-send)."""

    def panic_stored() -> bool:
        with EventStore(db_path) as store:
            return any(r["kind"] == "panic" for r in store.recent(100))

    wait_until(panic_stored, timeout, "the panic in the commune's store")
    wait_until(
        lambda: outbox_counts(sim).get("undelivered_alarm", 0) == 0, timeout, "panic receipted"
    )


@pytest.mark.parametrize("restart", [False, True], ids=["live", "from-the-session"])
def test_a_real_hubs_panic_is_stored_and_receipted_at_once_after_poison(
    restart: bool, mosquitto: Any, tmp_path: Path
) -> None:
    """The finding as it was seen: poison on a real hub's topics (seq 10**30 jammed the store
    for good, 100,000 levels of nesting left its batch unacknowledged), then a press of the
    simulated hub's panic button. With ``restart`` the poison waits in the receiver's session
    and reaches it in the burst after a restart, ahead of the panic."""
    db_path = tmp_path / "receiver.sqlite3"

    def new_receiver() -> Receiver:
        receiver = Receiver(mosquitto.host, mosquitto.port, SIM_COMMUNE, db_path)
        receiver.start()
        assert receiver.wait_subscribed(10)
        return receiver

    poison = [
        (SIM_TOPICS.event("panic"), raw(event_dict(hub=SIM_HUB, seq=10**30))),
        (SIM_TOPICS.event("panic"), b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        (
            SIM_TOPICS.event("panic"),
            with_text(data='{"level": NaN}').replace(b'"hub-1"', b'"sim-hub"'),
        ),
    ]
    receiver = new_receiver()
    try:
        if restart:
            receiver.stop()  # the broker keeps its session and queues the poison there
        with Subscriber(mosquitto) as attacker:
            for topic, payload in poison:
                attacker.publish(topic, payload)
        if restart:
            receiver = new_receiver()
        with sim_hub(mosquitto, tmp_path / "hub") as sim:
            wait_until(lambda: sim.hub.uplink.connected, 10, "hub online")
            sim.board.press("panic-1")
            sim.board.release("panic-1")
            sim_panic_delivered(sim, db_path)
        assert receiver.stats.malformed == len(poison)
    finally:
        receiver.stop()

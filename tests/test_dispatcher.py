"""The dispatcher on its own: a real outbox file, and in front of it either a publisher that
records what it is handed and PUBACKs only when the test says (the drain order, the in-flight
window, the batched marks, re-sends), or a real uplink to a real Mosquitto (delivery by PUBACK
or by receipt, the re-send after a broker restart).

A test that must know the store thread has acted on everything it was given waits for two of
its turns in a row (``Rig.settle``): the first takes what was queued, the second begins only
once the first has handed out all the rows it was going to hand out.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.events import Event
from core.topics import HubTopics
from gateway.dispatcher import Dispatcher
from gateway.guarded_outbox import GuardedOutbox
from gateway.outbox import DELIVERED, PENDING, SENT, Outbox
from testkit.broker import Broker
from testkit.link import uplink_for
from testkit.mqtt import Subscriber, publish_once
from testkit.publisher import Published, RecordingPublisher
from testkit.waiting import wait_until

TOPICS = HubTopics("c1", "hub-1")
EVENTS = TOPICS.event("+")
FAR = 600.0  # a receipt timeout no test waits for: only the paths under test re-send


class Turns:
    """Counts the store thread's turns (its ``on_turn`` hook)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def tick(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_past(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.count > n, timeout):
                raise AssertionError(f"the store thread did not turn past {n} in {timeout} s")


def submit(dispatcher: Dispatcher, *kinds: str) -> list[Event]:
    """Events of these kinds, in this order, once committed (with their seq)."""
    events = [Event(kind=k, zone="z", source=f"{k}-{i}") for i, k in enumerate(kinds)]
    return dispatcher.submit(events).result(timeout=10)


@dataclass
class Rig:
    dispatcher: Dispatcher
    publisher: RecordingPublisher
    outbox_path: Path
    turns: Turns

    def submit(self, *kinds: str) -> list[Event]:
        return submit(self.dispatcher, *kinds)

    def settle(self) -> None:
        """Every op queued so far applied, and the rows it freed handed out.

        Through ``call``: a call makes the store thread write the PUBACKs it holds, so a test
        of the batched marks waits with ``settle_unmarked`` instead."""
        for _ in range(2):
            self.dispatcher.call(lambda outbox: None).result(timeout=10)

    def settle_unmarked(self) -> None:
        """As ``settle``, without a call: two more turns of the store thread."""
        self.turns.wait_past(self.turns.count + 1)

    def states(self) -> dict[int, int]:
        """Rows by state, read from the file by another connection (what is on disk)."""
        with closing(sqlite3.connect(self.outbox_path)) as conn:
            rows = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        return {int(state): int(n) for state, n in rows}

    def state_of(self, event: Event) -> int | None:
        state: int | None = self.dispatcher.call(lambda o: o.state_of(event.id)).result(10)
        return state


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make_rig(auto_ack=..., **Dispatcher options)``: a started dispatcher over a fresh
    outbox, its publisher recording; offline until ``rig.dispatcher.on_connected()``."""
    made: list[tuple[Dispatcher, Outbox]] = []

    def make(*, auto_ack: bool = False, **options: Any) -> Rig:
        path = tmp_path / f"outbox-{len(made)}.sqlite3"
        outbox = Outbox(path, TOPICS.hub)
        turns = Turns()
        options.setdefault("receipt_timeout_s", FAR)
        dispatcher = Dispatcher(outbox, TOPICS, on_turn=turns.tick, **options)
        publisher = RecordingPublisher(dispatcher.on_published, auto_ack=auto_ack)
        dispatcher.attach(publisher)
        made.append((dispatcher, outbox))
        dispatcher.start()
        return Rig(dispatcher, publisher, path, turns)

    yield make
    for dispatcher, outbox in made:
        dispatcher.stop(drain_timeout_s=0.2)
        outbox.close()


def ids(messages: list[Published]) -> list[str]:
    return [m.json()["id"] for m in messages]


def event_ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


# -- drain order ------------------------------------------------------------------------------


def test_a_backlog_drains_alarms_then_trouble_then_detections_then_telemetry(make_rig) -> None:
    rig = make_rig(auto_ack=True, receipts=False)
    # Committed while offline, in this order of age: the oldest of each class first.
    made = rig.submit(
        "telemetry", "person", "telemetry", "tamper", "panic", "person", "telemetry", "fire",
        "tamper", "telemetry",
    )  # fmt: skip
    rig.dispatcher.on_connected()

    sent = rig.publisher.wait_for_events(len(made))

    classes = [("panic", "fire"), ("tamper",), ("person",), ("telemetry",)]
    assert ids(sent) == [e.id for kinds in classes for e in made if e.kind in kinds]
    assert [m.topic for m in sent[:2]] == [TOPICS.event("panic"), TOPICS.event("fire")]


def test_an_alarm_goes_out_at_once_past_a_full_window_of_backlog(make_rig) -> None:
    rig = make_rig(receipts=False, window=8)
    rig.dispatcher.on_connected()
    rig.submit(*["telemetry"] * 100)
    rig.publisher.wait_for_events(8)
    rig.settle()
    assert len(rig.publisher.events()) == 8  # the window is full, nothing PUBACKed

    [panic] = rig.submit("panic")
    sent = rig.publisher.wait_for_events(9)
    assert ids(sent[8:]) == [panic.id]  # no PUBACK came: the alarm did not wait for one
    rig.settle()
    assert len(rig.publisher.events()) == 9  # and no telemetry slipped out with it


def test_an_alarm_goes_out_while_its_commit_waits_and_is_accepted_only_once_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = GuardedOutbox(path, TOPICS.hub)  # the hub's outbox: it reserves seqs durably
    dispatcher = Dispatcher(outbox, TOPICS, receipt_timeout_s=FAR)
    publisher = RecordingPublisher(dispatcher.on_published)
    dispatcher.attach(publisher)
    dispatcher.start()
    dispatcher.on_connected()
    dispatcher.call(lambda o: None).result(10)  # the file is open
    # Another writer holds the file: every commit waits for it.
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        panic = dispatcher.submit([Event(kind="panic", zone="z", source="p")])
        [message] = publisher.wait_for_events(1)
        assert message.kind == "panic" and message.json()["seq"] == 1
        assert not panic.done()  # on the wire, not yet accepted
        assert int(outbox.seq_record.path.read_text()) >= 1  # its seq is reserved on disk
        writer.execute("ROLLBACK")
    assert panic.result(10)[0].seq == 1
    assert outbox.health() == {"state": "ok", "in_memory": 0}  # committed to the file
    publisher.ack(message)
    wait_until(lambda: dispatcher.call(lambda o: o.state_of(message.json()["id"])).result(10)
               == SENT, what="its PUBACK marked")  # fmt: skip
    assert len(publisher.events()) == 1  # published once: the pump knew it was out
    dispatcher.stop(0.2)
    outbox.close()


def test_trouble_and_detections_go_ahead_of_the_rest_of_a_backlog(make_rig) -> None:
    rig = make_rig(receipts=False, window=8)
    rig.dispatcher.on_connected()
    rig.submit(*["telemetry"] * 100)
    first = rig.publisher.wait_for_events(8)
    detection, trouble = rig.submit("person", "tamper")
    rig.settle()
    assert len(rig.publisher.events()) == 8  # they wait for the window, unlike an alarm

    rig.publisher.ack(*first[:2])  # a quarter of the window free: it is refilled
    sent = rig.publisher.wait_for_events(10)
    assert ids(sent[8:]) == [trouble.id, detection.id]


# -- the in-flight window ---------------------------------------------------------------------


def test_never_more_than_the_window_in_flight_and_each_puback_sends_the_next_row(
    make_rig,
) -> None:
    rig = make_rig(receipts=False, window=8)
    rig.dispatcher.on_connected()
    made = rig.submit(*["telemetry"] * 60)
    rig.publisher.wait_for_events(8)
    rig.settle()
    assert len(rig.publisher.unacked_events()) == 8
    assert len(rig.publisher.events()) == 8

    # The thread that delivers a PUBACK (paho's, in the hub; this one here) sends the next
    # ready row itself before it returns: no turn of the store thread in between.
    [oldest, *_] = rig.publisher.unacked_events()
    rig.publisher.ack(oldest)
    assert len(rig.publisher.events()) == 9
    assert len(rig.publisher.unacked_events()) == 8

    # PUBACKs in any order, one to three at a time: the window is full again once the store
    # thread has turned while there is a backlog, and never past 8.
    rng = random.Random(8)
    while len(rig.publisher.events()) < len(made):
        waiting = rig.publisher.unacked_events()
        rig.publisher.ack(*rng.sample(waiting, min(len(waiting), rng.randint(1, 3))))
        assert len(rig.publisher.unacked_events()) <= 8
        rig.settle()
        in_flight = len(rig.publisher.unacked_events())
        if len(rig.publisher.events()) < len(made):
            assert in_flight == 8, in_flight
        assert in_flight <= 8
    rig.publisher.ack_all()
    wait_until(lambda: rig.states() == {DELIVERED: len(made)}, what="all delivered")
    assert sorted(ids(rig.publisher.events())) == sorted(event_ids(made))  # each sent once


def pubacks_taken(make_rig: Callable[..., Rig], events: int, acked: int) -> Rig:
    """A dispatcher marking PUBACKs in batches of four (never for the time alone) with
    ``events`` telemetry handed out as the window allows, ``acked`` of them PUBACKed, those
    PUBACKs taken by the store thread and two turns gone by since."""
    rig = make_rig(receipts=False, window=8, ack_batch=4, ack_delay_s=FAR)
    rig.dispatcher.on_connected()
    rig.submit(*["telemetry"] * events)
    rig.publisher.wait_for_events(min(events, 8))
    rig.publisher.ack(*rig.publisher.unacked_events()[:acked])
    wait_until(lambda: rig.dispatcher.stats.acked == acked, what=f"{acked} PUBACKs taken")
    rig.settle_unmarked()
    return rig


def test_pubacks_are_marked_in_batches(make_rig) -> None:
    rig = pubacks_taken(make_rig, events=20, acked=3)
    assert rig.states() == {PENDING: 20}  # three PUBACKs wait for a batch of four

    rig.publisher.ack(rig.publisher.unacked_events()[0])
    wait_until(lambda: rig.states().get(DELIVERED) == 4, what="the batch of four marked")
    rig.settle_unmarked()
    assert rig.states() == {PENDING: 16, DELIVERED: 4}


def test_the_last_puback_in_flight_is_marked_at_once(make_rig) -> None:
    rig = pubacks_taken(make_rig, events=3, acked=2)
    assert rig.states() == {PENDING: 3}  # one still in flight

    rig.publisher.ack_all()  # nothing else in flight: no reason left to wait
    wait_until(lambda: rig.states() == {DELIVERED: 3}, what="all three marked")


def test_a_pubacks_mark_waits_no_longer_than_the_ack_delay(make_rig) -> None:
    rig = make_rig(receipts=False, window=8, ack_batch=1000, ack_delay_s=0.2)
    rig.dispatcher.on_connected()
    rig.submit(*["telemetry"] * 20)
    rig.publisher.wait_for_events(8)
    rig.publisher.ack(*rig.publisher.unacked_events()[:3])
    # Nothing else comes back, the batch is far from full: the delay alone marks them.
    wait_until(lambda: rig.states().get(DELIVERED) == 3, what="marked after the delay")


# -- delivery: receipt or PUBACK --------------------------------------------------------------


def test_with_receipts_a_puback_makes_a_row_sent_and_only_its_receipt_delivered(make_rig) -> None:
    rig = make_rig(auto_ack=True, receipts=True)
    rig.dispatcher.on_connected()
    panic, telemetry = rig.submit("panic", "telemetry")
    rig.publisher.wait_for_events(2)
    rig.settle()
    assert (rig.state_of(panic), rig.state_of(telemetry)) == (SENT, SENT)

    rig.dispatcher.on_receipt(["not-an-event-of-ours", panic.id])
    rig.settle()
    assert (rig.state_of(panic), rig.state_of(telemetry)) == (DELIVERED, SENT)
    assert rig.dispatcher.stats.receipts == 1


def test_without_receipts_the_puback_delivers(make_rig) -> None:
    rig = make_rig(auto_ack=True, receipts=False)
    rig.dispatcher.on_connected()
    made = rig.submit("panic", "telemetry")
    rig.publisher.wait_for_events(2)
    rig.settle()
    assert [rig.state_of(e) for e in made] == [DELIVERED, DELIVERED]


def test_a_refused_puback_keeps_the_row_and_does_not_resend_it_in_a_loop(make_rig) -> None:
    rig = make_rig(receipts=False)
    rig.dispatcher.on_connected()
    [telemetry] = rig.submit("telemetry")
    [sent] = rig.publisher.wait_for_events(1)
    rig.publisher.ack(sent, accepted=False)  # an ACL said no
    wait_until(lambda: rig.dispatcher.stats.rejected == 1, what="the refusal counted")
    rig.settle()
    assert rig.state_of(telemetry) == PENDING
    assert len(rig.publisher.events()) == 1


@pytest.mark.parametrize("receipts", [True, False], ids=["receipts", "puback"])
def test_delivery_through_a_real_broker(receipts: bool, mosquitto: Broker, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", TOPICS.hub)
    dispatcher = Dispatcher(outbox, TOPICS, receipts=receipts, receipt_timeout_s=FAR)
    uplink = uplink_for(dispatcher, mosquitto, TOPICS)
    with Subscriber(mosquitto, EVENTS) as sub:
        dispatcher.start()
        uplink.start()
        try:
            made = submit(dispatcher, "panic", "tamper")
            got = sub.wait_for(2)
            assert sorted(m.json()["id"] for m in got) == sorted(event_ids(made))

            def counts() -> dict[str, int]:
                return dispatcher.call(lambda o: o.counts()).result(10)

            if not receipts:
                wait_until(lambda: counts()["delivered"] == 2, what="delivered by PUBACK")
                return
            wait_until(lambda: counts()["sent"] == 2, what="both PUBACKed")
            publish_once(mosquitto, TOPICS.receipt, json.dumps({"ids": [made[0].id]}))
            wait_until(lambda: counts()["delivered"] == 1, what="the panic receipted")
            assert counts()["sent"] == 1  # the tamper waits for its own receipt
        finally:
            uplink.stop()
            dispatcher.stop(drain_timeout_s=0.2)
            outbox.close()


# -- re-sends ---------------------------------------------------------------------------------


def test_a_reconnect_resends_the_unreceipted_alarms_and_nothing_else(make_rig) -> None:
    rig = make_rig(auto_ack=True, receipts=True)
    rig.dispatcher.on_connected()
    panic, tamper, telemetry, fire = rig.submit("panic", "tamper", "telemetry", "fire")
    rig.publisher.wait_for_events(4)
    rig.dispatcher.on_receipt([fire.id])
    rig.settle()

    rig.dispatcher.on_disconnected()
    rig.dispatcher.on_connected()
    rig.publisher.wait_for_events(5)
    rig.settle()
    assert ids(rig.publisher.events()[4:]) == [panic.id]  # not the receipted fire
    assert rig.dispatcher.stats.resent == 1


def test_without_receipts_a_reconnect_resends_nothing(make_rig) -> None:
    rig = make_rig(auto_ack=True, receipts=False)
    rig.dispatcher.on_connected()
    rig.submit("panic", "telemetry")
    rig.publisher.wait_for_events(2)
    rig.settle()
    rig.dispatcher.on_disconnected()
    rig.dispatcher.on_connected()
    rig.settle()
    assert len(rig.publisher.events()) == 2 and rig.dispatcher.stats.resent == 0


def test_the_receiver_online_resends_every_unreceipted_row_in_flight_or_sent(make_rig) -> None:
    rig = make_rig(receipts=True)
    rig.dispatcher.on_connected()
    panic, tamper, acked, in_flight = rig.submit("panic", "tamper", "telemetry", "telemetry")
    first = rig.publisher.wait_for_events(4)
    rig.publisher.ack(*[m for m in first if m.json()["id"] != in_flight.id])
    rig.dispatcher.on_receipt([acked.id])
    rig.settle()
    assert [rig.state_of(e) for e in (panic, tamper, acked, in_flight)] == [
        SENT, SENT, DELIVERED, PENDING,
    ]  # fmt: skip

    rig.dispatcher.on_receiver_online()
    rig.publisher.wait_for_events(7)
    rig.settle()
    # The alarm first; the row still in flight too (the broker may have routed it before the
    # receiver's subscription); never the receipted one.
    assert ids(rig.publisher.events()[4:]) == [panic.id, tamper.id, in_flight.id]


def test_after_a_broker_restart_the_unreceipted_alarm_is_sent_again(
    mosquitto: Broker, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", TOPICS.hub)
    dispatcher = Dispatcher(outbox, TOPICS, receipts=True, receipt_timeout_s=FAR)
    uplink = uplink_for(dispatcher, mosquitto, TOPICS)
    dispatcher.start()
    uplink.start()
    try:
        with Subscriber(mosquitto, EVENTS) as sub:
            panic, telemetry = submit(dispatcher, "panic", "telemetry")
            sub.wait_for(2)
            wait_until(
                lambda: dispatcher.call(lambda o: o.counts()).result(10)["sent"] == 2,
                what="both PUBACKed, unreceipted",
            )
        connects = uplink.stats.connects
        mosquitto.restart()  # without persistence: what the broker had PUBACKed is gone
        # Subscribed long before the uplink's first reconnect attempt (at least a second).
        with Subscriber(mosquitto, EVENTS) as sub:
            wait_until(lambda: uplink.stats.connects > connects, 30, "the uplink back")
            [again] = sub.wait_for(1)
            assert again.json()["id"] == panic.id
            # A new event after it: everything re-sent on the reconnect came before it.
            [later] = submit(dispatcher, "telemetry")
            got = sub.wait_for(2)
        assert [m.json()["id"] for m in got] == [panic.id, later.id]  # not the old telemetry
    finally:
        uplink.stop()
        dispatcher.stop(drain_timeout_s=0.2)
        outbox.close()

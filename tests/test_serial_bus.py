"""The serial sensor bus on real pseudo-terminals: the hub opens the pty's slave with pyserial,
the test plays the sensor node on the master side with the shared codec.

Tests about the event path use the whole hub (real Mosquitto, real SQLite); tests about the
driver alone give it a recording ``emit``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from pty_helpers import NodeEnd

from core.events import Event
from core.topics import HubTopics
from firmware_py import codec
from gateway.service import OUTBOX_FILE
from sensors.serial_bus import SerialBus, SerialBuses
from sensors.supervision import Supervisor
from settings import BusConfig, Config, NodeConfig
from testkit.hubs import COMMUNE, EVENTS, HUB, outbox_counts, sim_config, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
NODE_ID = 5


# --- The node's end of the wire -----------------------------------------------------------


@pytest.fixture
def node_end() -> Iterator[NodeEnd]:
    end = NodeEnd()
    yield end
    end.close()


def alarm(seq: int, what: int = codec.SMOKE, level: int = 700, node: int = NODE_ID) -> bytes:
    return codec.encode(codec.ALARM, node, 1, seq, codec.alarm_payload(what, level))


def restore(seq: int, what: int = codec.SMOKE, level: int = 10, node: int = NODE_ID) -> bytes:
    return codec.encode(codec.RESTORE, node, 1, seq, codec.alarm_payload(what, level))


def heartbeat(seq: int, state: int = 0, mv: int = 3000, node: int = NODE_ID) -> bytes:
    return codec.encode(codec.HEARTBEAT, node, 1, seq, codec.heartbeat_payload(mv, state, 12, 30))


def acks(frames: list[Any]) -> list[tuple[int, int, int]]:
    assert all(f.mtype == codec.ACK for f in frames), frames
    return [f.key() for f in frames]


# --- Driving the driver directly ----------------------------------------------------------


class Recorder:
    """Stands in for ``Hub.emit``: records events; futures resolve at once unless ``hold``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.futures: list[Future[list[Event]]] = []
        self.hold = False
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> Future[list[Event]]:
        fut: Future[list[Event]] = Future()
        with self._lock:
            self.events.append(event)
            self.futures.append(fut)
        if not self.hold:
            fut.set_result([event])
        return fut

    def kinds(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e.kind, e.qualifier) for e in self.events]

    def of(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]


def node_cfg(**kw: Any) -> NodeConfig:
    return NodeConfig(**{"name": "smoke-1", "bus": "bus-1", "id": NODE_ID, **kw})


@pytest.fixture
def make_bus() -> Iterator[Callable[..., SerialBus]]:
    made: list[SerialBus] = []

    def make(
        port: str,
        emit: Callable[[Event], Any],
        nodes: tuple[NodeConfig, ...] = (),
        supervisor: Supervisor | None = None,
        **options: Any,
    ) -> SerialBus:
        spec = BusConfig(name="bus-1", port=port)
        bus = SerialBus(spec, nodes or (node_cfg(),), emit, supervisor=supervisor, **options)
        made.append(bus)
        bus.start()
        return bus

    yield make
    for bus in made:
        bus.close()


# --- Through the whole hub ----------------------------------------------------------------


def bus_hub_config(port: str, uplink: dict[str, Any] | None = None, **node: Any) -> Config:
    """The default simulated hub plus one bus on ``port`` with the smoke node on it."""
    return sim_config(
        uplink={"receipts": False, **(uplink or {})},
        buses=[{"name": "bus-1", "port": port}],
        nodes=[{"name": "smoke-1", "bus": "bus-1", "id": NODE_ID, "zone": "kitchen", **node}],
    )


def stored_kinds(data_dir: Path) -> list[str]:
    """The outbox as another process would read it: committed rows only."""
    with sqlite3.connect(data_dir / OUTBOX_FILE) as conn:
        return [kind for (kind,) in conn.execute("SELECT kind FROM outbox ORDER BY seq")]


def test_a_smoke_alarm_is_published_and_acked_only_once_committed(
    mosquitto, tmp_path: Path, node_end: NodeEnd
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, bus_hub_config(node_end.path)) as hub,
    ):
        bus = hub.hub.buses.buses["bus-1"]
        wait_until(lambda: bus.is_open, what="bus open")
        node_end.send(alarm(seq=7, level=812))
        [ack] = node_end.frames(1)
        # The ACK is on the wire: the event must already be on disk.
        assert stored_kinds(tmp_path) == ["smoke"]
        assert ack.key() == (NODE_ID, 1, 7)
        [msg] = sub.wait_for(1)
        assert hub.board.outputs()["siren"] is True  # local rules heard it too
        # Counted once written: the node may read the ACK a moment before the count goes up.
        wait_until(lambda: hub.hub._health_extra()["buses"]["bus-1"]["acks"] == 1, what="ACK")
        health = hub.hub._health_extra()["buses"]["bus-1"]
    assert msg.topic == TOPICS.event("smoke")
    event = msg.json()
    assert (event["cid"], event["qualifier"], event["zone"], event["source"]) == (
        111,
        "E",
        "kitchen",
        "smoke-1",
    )
    assert event["data"] == {"node": NODE_ID, "bus": "bus-1", "boot": 1, "seq": 7, "level": 812}
    assert health["frames"] == 1 and health["acks"] == 1 and health["open"] is True
    node = health["nodes"]["smoke-1"]
    assert node["id"] == NODE_ID and node["level"] == 812 and node["lost"] is False
    assert node["last_seen_s"] is not None and node["last_seen_s"] < 5


def test_no_ack_while_the_outbox_cannot_commit_then_one_event_and_every_ack(
    mosquitto, tmp_path: Path, node_end: NodeEnd
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        # Receipts on and no receiver: the PUBACK does not make the alarm delivered, so only
        # the disk can make it accepted.
        sim_hub(mosquitto, tmp_path, bus_hub_config(node_end.path, {"receipts": True})) as hub,
    ):
        bus = hub.hub.buses.buses["bus-1"]
        wait_until(lambda: bus.is_open, what="bus open")
        # SQLite refuses every write from now on, as with a card gone read-only.
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=1")).result(5)
        node_end.send(alarm(seq=3))
        assert node_end.quiet(1.2) == []  # several failed commits, and no ACK
        assert hub.board.outputs()["siren"] is True  # the siren never waits for the disk
        node_end.send(alarm(seq=3))  # the node re-sends, as it does until ACKed
        wait_until(lambda: bus.stats.duplicates == 1, what="the copy counted")
        assert node_end.quiet(0.6) == []
        hub.hub.dispatcher.call(lambda o: o.conn.execute("PRAGMA query_only=0")).result(5)
        frames = node_end.frames(2)  # one ACK for each copy received
        # The hub also reports its disk (storage_fault, sent from memory, then its restore).
        assert [k for k in stored_kinds(tmp_path) if k != "storage_fault"] == ["smoke"]
        assert acks(frames) == [(NODE_ID, 1, 3)] * 2
        assert node_end.quiet(0.3) == frames
        smoke = [m for m in sub.messages if m.json()["kind"] == "smoke"]
        assert len(smoke) == 1  # published once, from memory, and not again once on disk


def test_five_copies_give_five_acks_and_one_event(
    mosquitto, tmp_path: Path, node_end: NodeEnd
) -> None:
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, bus_hub_config(node_end.path)) as hub,
    ):
        bus = hub.hub.buses.buses["bus-1"]
        wait_until(lambda: bus.is_open, what="bus open")
        node_end.send(*[alarm(seq=11)] * 5)
        frames = node_end.frames(5)
        assert acks(frames) == [(NODE_ID, 1, 11)] * 5
        node_end.send(alarm(seq=11))  # a late copy, after the commit
        assert acks(node_end.frames(6)) == [(NODE_ID, 1, 11)] * 6
        sub.wait_for(1)
        wait_until(lambda: outbox_counts(hub).get("delivered") == 1, what="PUBACK")
        assert node_end.quiet(0.3) == node_end.received[:6]
        assert stored_kinds(tmp_path) == ["smoke"]
        assert len(sub.messages) == 1
        assert bus.stats.duplicates == 5


def test_health_lists_bus_counters_and_node_state(
    mosquitto, tmp_path: Path, node_end: NodeEnd
) -> None:
    with (
        Subscriber(mosquitto, TOPICS.health) as sub,
        sim_hub(
            mosquitto, tmp_path, bus_hub_config(node_end.path, {"health_interval_s": 0.2})
        ) as hub,
    ):
        wait_until(lambda: hub.hub.buses.buses["bus-1"].is_open, what="bus open")
        node_end.send(heartbeat(seq=1, mv=2950), b"\x01\x02junk\x00")
        node_end.frames(1)
        msgs = sub.wait_until(lambda ms: any(m.json()["buses"]["bus-1"]["frames"] for m in ms))
    health = msgs[-1].json()
    bus = health["buses"]["bus-1"]
    assert bus["port"] == node_end.path and bus["open"] is True and bus["fault"] is False
    assert sum(bus["bad_frames"].values()) == 1
    assert (bus["duplicates"], bus["reopens"], bus["unknown_frames"]) == (0, 0, 0)
    assert bus["nodes"]["smoke-1"]["battery_mv"] == 2950
    assert bus["nodes"]["smoke-1"]["lost"] is False
    assert health["modbus"] == {}


# --- The driver alone ---------------------------------------------------------------------


def test_garbage_truncated_and_corrupted_frames_are_counted_and_skipped(
    node_end: NodeEnd, make_bus
) -> None:
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    good = [alarm(seq=s, level=s) for s in (1, 2, 3, 4)]
    flipped = bytearray(alarm(seq=9))
    flipped[6] ^= 0x10
    node_end.send(
        b"\x13\x37 line noise \xff\xfe",
        good[0],
        alarm(seq=8)[:-5],  # truncated: its tail never came
        good[1],
        bytes(flipped),
        bytes(range(1, 200)) * 3,  # far longer than any frame, no delimiter
        good[2],
        codec.encode(codec.ALARM, NODE_ID, 1, 10, b"\x01"),  # wrong payload length
        b"\x00\x00\x00",
    )
    node_end.send(good[3])
    frames = node_end.frames(4)
    assert acks(frames) == [(NODE_ID, 1, s) for s in (1, 2, 3, 4)]
    assert [e.data["level"] for e in emit.events] == [1, 2, 3, 4]
    bad = bus.bad_frames()
    assert sum(bad.values()) >= 5, bad  # noise, truncated, flipped, overlong, bad length
    assert {"crc", "length"} <= set(bad), bad
    assert bus._thread.is_alive()
    assert bus.stats.handler_errors == 0


def test_an_unknown_node_is_reported_as_such_and_acked(node_end: NodeEnd, make_bus) -> None:
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    node_end.send(alarm(seq=4, node=77), alarm(seq=5, node=77, what=codec.PANIC))
    assert acks(node_end.frames(2)) == [(77, 1, 4), (77, 1, 5)]
    smoke, panic = emit.events
    assert (smoke.kind, smoke.qualifier, smoke.source, smoke.zone) == (
        "smoke",
        "E",
        "node-77",
        "unknown",
    )
    assert smoke.data == {
        "node": 77,
        "bus": "bus-1",
        "boot": 1,
        "seq": 4,
        "level": 700,
        "unknown_node": True,
    }
    assert panic.kind == "panic"
    health = bus.health()
    assert health["unknown_frames"] == 2 and health["unknown_nodes"] == [77]
    assert "node-77" not in health["nodes"]


def test_frame_types_map_to_event_kinds(node_end: NodeEnd, make_bus) -> None:
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    node_end.send(
        alarm(1, codec.SMOKE),
        restore(2, codec.SMOKE),
        alarm(3, codec.HEAT),
        alarm(4, codec.FIRE),
        alarm(5, codec.PANIC),
        codec.encode(codec.TAMPER, NODE_ID, 1, 6),
        restore(7, codec.CASE),
        codec.encode(codec.LOW_BATTERY, NODE_ID, 1, 8, codec.u16(2100)),
    )
    node_end.frames(8)
    assert emit.kinds() == [
        ("smoke", "E"),
        ("smoke", "R"),
        ("heat", "E"),
        ("fire", "E"),
        ("panic", "E"),
        ("sensor_tamper", "E"),
        ("sensor_tamper", "R"),
        ("low_battery", "E"),
    ]
    assert [e.cid for e in emit.events] == [111, 111, 114, 110, 120, 144, 144, 384]
    assert emit.events[-1].data["mv"] == 2100
    # A heartbeat with the battery bit clear again restores it.
    node_end.send(heartbeat(9, state=codec.STATE_HEAT, mv=3300))
    node_end.frames(9)
    assert emit.kinds()[-1] == ("low_battery", "R")
    assert emit.events[-1].data["from"] == "heartbeat"
    assert bus.health()["nodes"]["smoke-1"]["battery_mv"] == 3300


def test_a_heartbeat_reports_what_lost_frames_did_not(node_end: NodeEnd, make_bus) -> None:
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    node_end.send(heartbeat(1))
    node_end.frames(1)
    assert emit.events == []  # all clear, as the hub believes
    # The smoke ALARM frame was lost on the wire; the next heartbeat shows smoke.
    emit.hold = True
    node_end.send(heartbeat(3, state=codec.STATE_SMOKE))
    wait_until(lambda: len(emit.events) == 1, what="smoke from the heartbeat")
    assert node_end.quiet(0.2) == node_end.received[:1]  # its ACK waits for the commit
    emit.futures[0].set_result([emit.events[0]])
    assert acks(node_end.frames(2))[-1] == (NODE_ID, 1, 3)
    [smoke] = emit.events
    assert (smoke.kind, smoke.qualifier, smoke.zone) == ("smoke", "E", "smoke-1")
    assert smoke.data["from"] == "heartbeat" and smoke.data["seq"] == 3
    emit.hold = False
    # Smoke still shown: nothing new. Then the RESTORE frame is lost too.
    node_end.send(heartbeat(4, state=codec.STATE_SMOKE), heartbeat(6, state=0))
    node_end.frames(4)
    assert emit.kinds() == [("smoke", "E"), ("smoke", "R")]
    # A panic bit reports a missed panic; a panic bit gone is no restore.
    node_end.send(heartbeat(7, state=codec.STATE_PANIC), heartbeat(8, state=0))
    node_end.frames(6)
    assert emit.kinds()[2:] == [("panic", "E")]
    # An ALARM that did arrive is not reported twice by the heartbeat after it.
    node_end.send(alarm(9, codec.HEAT), heartbeat(10, state=codec.STATE_HEAT))
    node_end.frames(8)
    assert emit.kinds()[3:] == [("heat", "E")]


def test_a_late_copy_of_an_older_alarm_is_reported_but_does_not_undo_its_restore(
    node_end: NodeEnd, make_bus
) -> None:
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    # The ALARM's first copy was lost; its RESTORE arrived; then the ALARM's re-send.
    node_end.send(restore(seq=4), alarm(seq=3))
    node_end.frames(2)
    assert emit.kinds() == [("smoke", "R"), ("smoke", "E")]
    node_end.send(heartbeat(seq=5, state=0))  # all clear, as the hub believes
    node_end.frames(3)
    assert emit.kinds() == [("smoke", "R"), ("smoke", "E")]
    assert bus.health()["nodes"]["smoke-1"]["active"] == []


def test_a_failed_commit_is_not_acked_and_the_resent_frame_is_reported_again(
    node_end: NodeEnd, make_bus
) -> None:
    emit = Recorder()
    emit.hold = True
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    node_end.send(alarm(seq=2))
    wait_until(lambda: len(emit.events) == 1, what="reported")
    emit.futures[0].set_exception(OSError("disk I/O error"))
    assert node_end.quiet(0.3) == []
    node_end.send(alarm(seq=2))  # the node tries again
    wait_until(lambda: len(emit.events) == 2, what="reported again")
    emit.futures[1].set_result([emit.events[1]])
    assert acks(node_end.frames(1)) == [(NODE_ID, 1, 2)]
    assert bus.stats.duplicates == 0


def test_the_same_numbers_for_another_message_are_not_a_duplicate(
    node_end: NodeEnd, make_bus
) -> None:
    # A node that lost its boot counter reuses (boot, seq): its new alarm must not be dropped.
    emit = Recorder()
    bus = make_bus(node_end.path, emit)
    wait_until(lambda: bus.is_open, what="bus open")
    node_end.send(alarm(seq=1, level=100))
    node_end.frames(1)
    node_end.send(alarm(seq=1, level=900))
    node_end.frames(2)
    assert [e.data["level"] for e in emit.events] == [100, 900]
    assert bus.stats.key_reused == 1 and bus.stats.duplicates == 0


def test_supervision_reports_a_silent_node_once_and_its_return_once(
    node_end: NodeEnd, make_bus
) -> None:
    emit = Recorder()
    nodes = (
        node_cfg(heartbeat_s=0.1, missed=3),
        node_cfg(name="fob-1", id=6, heartbeat_s=0.1, missed=3, supervision_kind="rf_supervision"),
    )
    buses = SerialBuses([BusConfig(name="bus-1", port=node_end.path)], nodes, emit)
    buses.start()
    try:
        bus = buses.buses["bus-1"]
        wait_until(lambda: bus.is_open, what="bus open")
        wait_until(lambda: len(emit.events) == 2, timeout=3, what="both nodes lost")
        assert sorted(emit.kinds()) == [("rf_supervision", "E"), ("supervision", "E")]
        time.sleep(0.5)  # several more windows and checks: still reported once
        assert len(emit.events) == 2
        lost = {e.source: e for e in emit.events}
        assert lost["smoke-1"].cid == 147 and lost["fob-1"].cid == 381
        assert lost["smoke-1"].data["node"] == NODE_ID and lost["smoke-1"].data["heard"] is False
        assert bus.health()["nodes"]["smoke-1"]["lost"] is True
        node_end.send(heartbeat(seq=1))
        wait_until(lambda: len(emit.events) == 3, what="restore")
        assert emit.kinds()[2] == ("supervision", "R")
        assert emit.events[2].source == "smoke-1"
        node_end.send(heartbeat(seq=2))
        node_end.frames(2)
        assert emit.kinds().count(("supervision", "R")) == 1
    finally:
        buses.close()


def test_supervisor_counts_from_start_on_its_own_clock() -> None:
    now = [100.0]
    emit = Recorder()
    sup = Supervisor(emit, clock=lambda: now[0])
    sup.watch("a", window_s=10.0, kind="rf_supervision", zone="gate", data={"node": 1})
    sup.watch("b", window_s=30.0)
    now[0] = 109.0
    assert sup.check() == []
    sup.seen("b")
    now[0] = 110.5
    assert sup.check() == ["a"]
    assert sup.check() == []
    [lost] = emit.events
    assert (lost.kind, lost.qualifier, lost.zone, lost.source) == (
        "rf_supervision",
        "E",
        "gate",
        "a",
    )
    assert lost.data == {"node": 1, "window_s": 10.0, "silent_s": 10.5, "heard": False}
    now[0] = 140.0
    assert sup.check() == ["b"]
    sup.seen("a")
    sup.seen("a")
    assert emit.kinds() == [("rf_supervision", "E"), ("supervision", "E"), ("rf_supervision", "R")]
    assert sup.states()["a"]["lost"] is False and sup.states()["b"]["lost"] is True
    assert sup.seen("nobody") is False
    assert 0.05 <= sup.tick_s <= 1.0


def test_an_unplugged_adapter_is_one_fault_and_a_new_one_at_the_path_restores_it(
    tmp_path: Path, make_bus
) -> None:
    link = tmp_path / "ttyUSB-bus"
    first = NodeEnd()
    second = NodeEnd()
    try:
        os.symlink(first.path, link)
        emit = Recorder()
        bus = make_bus(str(link), emit, backoff_max_s=0.4)
        wait_until(lambda: bus.is_open, what="bus open")
        first.send(alarm(seq=1))
        first.frames(1)
        # Unplugged: the device node goes away and its far end hangs up.
        link.unlink()
        first.close()
        wait_until(lambda: emit.of("bus_fault"), what="bus fault")
        wait_until(lambda: bus.stats.open_failures >= 3, what="reopen attempts")
        [fault] = emit.of("bus_fault")
        assert (fault.qualifier, fault.cid, fault.source) == ("E", 330, "bus-1")
        assert fault.data["port"] == str(link)
        assert not bus.is_open
        # Plugged in again: a new device appears at the same path.
        os.symlink(second.path, link)
        wait_until(lambda: len(emit.of("bus_fault")) == 2, what="bus restored")
        assert emit.of("bus_fault")[1].qualifier == "R"
        second.send(alarm(seq=2, what=codec.PANIC))
        assert acks(second.frames(1)) == [(NODE_ID, 1, 2)]
        assert emit.kinds() == [
            ("smoke", "E"),
            ("bus_fault", "E"),
            ("bus_fault", "R"),
            ("panic", "E"),
        ]
        health = bus.health()
        assert (health["reopens"], health["faults"], health["open"]) == (1, 1, True)
    finally:
        first.close()
        second.close()


def test_a_port_missing_at_start_is_a_fault_until_it_appears(tmp_path: Path, make_bus) -> None:
    link = tmp_path / "ttyACM-bus"
    end = NodeEnd()
    try:
        emit = Recorder()
        bus = make_bus(str(link), emit, backoff_max_s=0.4)
        wait_until(lambda: emit.of("bus_fault"), what="bus fault")
        assert emit.kinds() == [("bus_fault", "E")]
        assert "cannot open" in emit.events[0].data["error"]
        os.symlink(end.path, link)
        wait_until(lambda: bus.is_open, what="bus open")
        wait_until(lambda: len(emit.events) == 2, what="restore")
        assert emit.kinds() == [("bus_fault", "E"), ("bus_fault", "R")]
        end.send(alarm(seq=1))
        end.frames(1)
    finally:
        end.close()


def test_another_device_at_the_port_path_is_a_fault_and_the_bus_moves_to_it(
    tmp_path: Path, make_bus
) -> None:
    link = tmp_path / "ttyUSB-bus"
    first = NodeEnd()
    second = NodeEnd()
    try:
        os.symlink(first.path, link)
        emit = Recorder()
        bus = make_bus(str(link), emit, backoff_max_s=0.4)
        wait_until(lambda: bus.is_open, what="bus open")
        first.send(alarm(seq=1))
        first.frames(1)
        # Another adapter takes the name while the first is still plugged in and working: only
        # the device check can tell.
        link.unlink()
        os.symlink(second.path, link)
        wait_until(lambda: len(emit.of("bus_fault")) == 2, what="fault and restore")
        fault, back = emit.of("bus_fault")
        assert (fault.qualifier, fault.data["error"]) == ("E", f"device {link} was replaced")
        assert (back.qualifier, back.data["bus"], back.data["port"]) == ("R", "bus-1", str(link))
        second.send(alarm(seq=2, what=codec.PANIC))
        assert acks(second.frames(1)) == [(NODE_ID, 1, 2)]
        first.send(alarm(seq=3))
        assert len(first.quiet(0.3)) == 1  # the old device is no longer the bus: no ACK
        assert emit.kinds() == [
            ("smoke", "E"),
            ("bus_fault", "E"),
            ("bus_fault", "R"),
            ("panic", "E"),
        ]
        health = bus.health()
        assert (health["reopens"], health["faults"], health["open"]) == (1, 1, True)
    finally:
        first.close()
        second.close()


def test_rs485_mode_falls_back_to_the_adapter_on_a_port_without_it(
    node_end: NodeEnd,
) -> None:
    emit = Recorder()
    bus = SerialBus(BusConfig(name="bus-1", port=node_end.path, rs485=True), (), emit)
    bus.start()
    try:
        wait_until(lambda: bus.is_open, what="bus open")
        assert bus.health()["rs485"] == "adapter"  # a pty has no RS-485 driver
        node_end.send(alarm(seq=1))
        assert acks(node_end.frames(1)) == [(NODE_ID, 1, 1)]
    finally:
        bus.close()

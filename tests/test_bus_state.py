"""What the serial bus makes of each new frame (sensors/bus_state.py): the events it reports and
what the hub then holds of its node. Real codec frames; the clock is the test's."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from firmware_py import codec
from sensors.bus_state import MAX_UNKNOWN_NODES, BusStats, NodeState, NodeTracker, newer

NODE = 5


def decoded(wire: bytes) -> Any:
    [frame] = codec.Decoder().feed(wire)
    return frame


def alarm(seq: int, what: int = codec.SMOKE, boot: int = 1) -> Any:
    return decoded(codec.encode(codec.ALARM, NODE, boot, seq, codec.alarm_payload(what, 700)))


def restore(seq: int, what: int = codec.SMOKE) -> Any:
    return decoded(codec.encode(codec.RESTORE, NODE, 1, seq, codec.alarm_payload(what, 10)))


def heartbeat(seq: int, state: int = 0, node: int = NODE) -> Any:
    payload = codec.heartbeat_payload(3000, state, 12, 30)
    return decoded(codec.encode(codec.HEARTBEAT, node, 1, seq, payload))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock | None = None) -> NodeTracker:
    smoke = NodeState(id=NODE, name="smoke-1", zone="kitchen", known=True, heartbeat_s=30.0)
    return NodeTracker("bus-1", [smoke], BusStats(), clock=clock or Clock())


def report(t: NodeTracker, frame: Any) -> list[tuple[str, str]] | None:
    events = t.events(frame, t.node(frame.node))
    return None if events is None else [(e.kind, e.qualifier) for e in events]


def test_a_heartbeat_reports_what_the_hub_missed_and_only_that() -> None:
    t = tracker()
    state = codec.STATE_SMOKE | codec.STATE_LOW_BATTERY
    assert report(t, heartbeat(1, state)) == [("smoke", "E"), ("low_battery", "E")]
    [event] = t.events(heartbeat(2, codec.STATE_SMOKE), t.known[NODE])
    assert (event.kind, event.qualifier, event.source, event.zone) == (
        "low_battery",
        "R",
        "smoke-1",
        "kitchen",
    )
    assert event.data == {
        "node": NODE,
        "bus": "bus-1",
        "boot": 1,
        "seq": 2,
        "mv": 3000,
        "level": 12,
        "from": "heartbeat",
    }
    assert report(t, heartbeat(3, codec.STATE_SMOKE)) == []


def test_a_heartbeat_older_than_the_last_event_frame_is_not_used() -> None:
    t = tracker()
    assert report(t, alarm(5)) == [("smoke", "E")]
    assert report(t, heartbeat(4, 0)) == []  # sent before the alarm: its bits are stale
    assert t.known[NODE].active == {"smoke"}
    assert report(t, heartbeat(6, 0)) == [("smoke", "R")]


def test_a_late_older_alarm_is_reported_but_the_newest_message_holds() -> None:
    t = tracker()
    assert report(t, restore(3)) == [("smoke", "R")]
    assert report(t, alarm(2)) == [("smoke", "E")]  # re-sent, arriving after its restore
    assert t.known[NODE].active == set()
    assert report(t, heartbeat(4, 0)) == []


def test_a_clear_panic_bit_restores_nothing() -> None:
    t = tracker()
    assert report(t, alarm(1, what=codec.PANIC)) == [("panic", "E")]
    assert report(t, heartbeat(2, 0)) == []


def test_an_unknown_alarm_type_is_not_understood() -> None:
    t = tracker()
    assert report(t, alarm(1, what=99)) is None
    assert t.stats.unknown_what == 1


@pytest.mark.parametrize(
    "pos, than, expected",
    [
        ((1, 2), None, True),
        ((1, 2), (1, 1), True),
        ((1, 1), (1, 2), False),
        ((1, 1), (1, 1), False),
        ((1, 0), (1, 65535), True),  # the sequence number wrapped
        ((2, 1), (1, 9), True),  # a new boot
    ],
)
def test_frame_order(pos: tuple[int, int], than: tuple[int, int] | None, expected: bool) -> None:
    assert newer(pos, than) is expected


def test_an_unknown_node_is_reported_as_itself_logged_once_a_minute_and_kept_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    t = tracker(clock)
    with caplog.at_level(logging.WARNING, logger="sensors.serial_bus"):
        node = t.node(77)
        [event] = t.events(alarm(1), node) or []
        assert (event.source, event.zone, event.data["unknown_node"]) == (
            "node-77",
            "unknown",
            True,
        )
        t.node(77)
        clock.now += 59.0
        t.node(77)
        clock.now += 1.0
        t.node(77)
    logged = [r for r in caplog.records if "node id 77" in r.getMessage()]
    assert len(logged) == 2 and t.stats.unknown_frames == 4
    for node_id in range(1000, 1000 + 2 * MAX_UNKNOWN_NODES):
        t.node(node_id)
    assert len(t.unknown_ids()) == MAX_UNKNOWN_NODES and 77 in t.unknown_ids()

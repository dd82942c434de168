"""Modbus RTU detectors polled over real pseudo-terminals.

The far end of each pty is a small Modbus RTU slave written here from the protocol itself
(function 3/4 reads, CRC-16/MODBUS), so the hub's minimalmodbus requests are answered, or not,
byte for byte as a detector on an RS-485 line would.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from core.events import Event
from core.topics import HubTopics
from sensors.modbus import ModbusLine, ModbusPollers
from settings import Config, ModbusConfig
from testkit.hubs import COMMUNE, EVENTS, HUB, sim_config, sim_hub
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

TOPICS = HubTopics(COMMUNE, HUB)
UNIT = 7
REGISTER = 10


def crc_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF; sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    crc = crc_modbus(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def test_crc_matches_the_specification_example() -> None:
    # Read holding register 0x0000..0x0001 of unit 1: the classic example frame 01 03 00 00 00 01.
    assert with_crc(bytes.fromhex("010300000001")) == bytes.fromhex("010300000001840a")


class RtuSlave:
    """A Modbus RTU detector on the master side of a pty: answers reads of single registers."""

    def __init__(self, unit: int = UNIT) -> None:
        self.unit = unit
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.registers: dict[tuple[int, int], int] = {}
        self.answering = True
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.05)
                if not ready:
                    continue
                buf += os.read(self.master, 256)
            except OSError:
                return
            while len(buf) >= 8:
                request = bytes(buf[:8])
                if crc_modbus(request[:6]) != request[6] | request[7] << 8:
                    del buf[0]  # out of step: slide to the next possible frame start
                    continue
                del buf[:8]
                self.requests += 1
                self._answer(request)

    def _answer(self, request: bytes) -> None:
        unit, function = request[0], request[1]
        address = int.from_bytes(request[2:4], "big")
        count = int.from_bytes(request[4:6], "big")
        if unit != self.unit or not self.answering:
            return
        value = self.registers.get((function, address))
        if function not in (3, 4) or count != 1 or value is None:
            reply = bytes((unit, function | 0x80, 0x02))  # exception 2: illegal data address
        else:
            reply = bytes((unit, function, 2)) + (value & 0xFFFF).to_bytes(2, "big")
        with contextlib.suppress(OSError):
            os.write(self.master, with_crc(reply))

    def set(self, value: int, function: int = 4, address: int = REGISTER) -> None:
        self.registers[function, address] = value

    def polls_after(self, count: int) -> Callable[[], bool]:
        """A predicate: ``count`` more requests have arrived than now."""
        target = self.requests + count
        return lambda: self.requests >= target

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def detector() -> Iterator[RtuSlave]:
    slave = RtuSlave()
    yield slave
    slave.close()


class Recorder:
    """Stands in for ``Hub.emit``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> Future[list[Event]]:
        with self._lock:
            self.events.append(event)
        fut: Future[list[Event]] = Future()
        fut.set_result([event])
        return fut

    def kinds(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e.kind, e.qualifier) for e in self.events]


def gas_spec(port: str, **kw: Any) -> ModbusConfig:
    return ModbusConfig.model_validate(
        {
            "name": "gas-1",
            "port": port,
            "unit": UNIT,
            "register": REGISTER,
            "function": 4,
            "kind": "gas",
            "threshold": 50,
            "restore_below": 30,
            "scale": 0.1,
            "poll_s": 0.05,
            "timeout_s": 0.1,
            "missed": 3,
            "zone": "kitchen",
            **kw,
        }
    )


@pytest.fixture
def make_line() -> Iterator[Callable[..., ModbusLine]]:
    made: list[ModbusLine] = []

    def make(specs: list[ModbusConfig], emit: Callable[[Event], Any], **kw: Any) -> ModbusLine:
        line = ModbusLine(specs, emit, **kw)
        made.append(line)
        line.start()
        return line

    yield make
    for line in made:
        line.close()


def test_a_reading_at_the_threshold_alarms_and_restores_below_the_hysteresis(
    detector: RtuSlave, make_line
) -> None:
    emit = Recorder()
    detector.set(200)  # 20.0 after scale: clear
    line = make_line([gas_spec(detector.path)], emit)
    wait_until(detector.polls_after(3), what="polls")
    assert emit.events == []
    assert line.health()["gas-1"]["value"] == pytest.approx(20.0)
    detector.set(500)  # exactly the threshold
    wait_until(lambda: emit.events, what="gas alarm")
    wait_until(detector.polls_after(3), what="polls")
    detector.set(400)  # below the threshold, above restore_below: still in alarm
    wait_until(detector.polls_after(3), what="polls")
    assert emit.kinds() == [("gas", "E")]
    detector.set(290)
    wait_until(lambda: len(emit.events) == 2, what="gas restore")
    wait_until(detector.polls_after(3), what="polls")
    assert emit.kinds() == [("gas", "E"), ("gas", "R")]
    alarm, restore = emit.events
    assert (alarm.cid, alarm.zone, alarm.source) == (151, "kitchen", "gas-1")
    assert alarm.data["value"] == pytest.approx(50.0) and alarm.data["raw"] == 500
    assert alarm.data["unit"] == UNIT and alarm.data["register"] == REGISTER
    assert restore.data["value"] == pytest.approx(29.0)
    assert line.health()["gas-1"]["alarm"] is False


def test_holding_registers_and_signed_readings(detector: RtuSlave, make_line) -> None:
    emit = Recorder()
    detector.set(0xFFF6, function=3, address=3)  # -10 as a signed 16-bit value
    spec = gas_spec(
        detector.path,
        name="freezer-heat",
        kind="heat",
        function=3,
        register=3,
        signed=True,
        scale=1.0,
        threshold=-20,
        restore_below=-25,
    )
    make_line([spec], emit)
    wait_until(lambda: emit.events, what="heat alarm")
    [heat] = emit.events
    assert (heat.kind, heat.cid, heat.data["value"]) == ("heat", 114, -10.0)


def test_a_silent_detector_is_trouble_after_missed_polls_and_restored_when_it_answers(
    detector: RtuSlave, make_line
) -> None:
    emit = Recorder()
    detector.set(100)
    line = make_line([gas_spec(detector.path)], emit)
    wait_until(detector.polls_after(2), what="polls")
    detector.answering = False
    wait_until(lambda: emit.events, what="supervision trouble")
    [trouble] = emit.events
    assert (trouble.kind, trouble.qualifier, trouble.cid) == ("supervision", "E", 147)
    assert trouble.data["missed"] == 3 and "NoResponseError" in trouble.data["error"]
    wait_until(detector.polls_after(5), what="more unanswered polls")
    assert len(emit.events) == 1
    detector.answering = True
    wait_until(lambda: len(emit.events) == 2, what="supervision restore")
    wait_until(detector.polls_after(3), what="polls")
    assert emit.kinds() == [("supervision", "E"), ("supervision", "R")]
    health = line.health()["gas-1"]
    assert health["trouble"] is False and health["failed_polls"] >= 3
    assert health["fault"] is False  # the port itself never failed


def test_an_exception_answer_counts_as_a_failed_poll(detector: RtuSlave, make_line) -> None:
    emit = Recorder()
    make_line([gas_spec(detector.path, register=99)], emit)  # the detector has no register 99
    wait_until(lambda: emit.events, what="supervision trouble")
    assert emit.kinds() == [("supervision", "E")]
    assert "IllegalRequestError" in emit.events[0].data["error"]


def test_two_detectors_share_one_line(detector: RtuSlave) -> None:
    emit = Recorder()
    detector.set(900)
    detector.set(12, function=3, address=1)
    specs = [
        gas_spec(detector.path),
        gas_spec(detector.path, name="smoke-2", kind="smoke", function=3, register=1, scale=1.0),
    ]
    pollers = ModbusPollers(specs, emit)
    assert len(pollers.lines) == 1
    pollers.start()
    try:
        wait_until(lambda: pollers.health()["smoke-2"]["value"] is not None, what="polled")
        wait_until(lambda: emit.events, what="gas alarm")
        assert emit.kinds() == [("gas", "E")]
        assert pollers.health()["smoke-2"]["value"] == 12.0
    finally:
        pollers.close()


def test_a_lost_port_is_a_fault_and_is_reopened_without_a_restart(
    tmp_path: Path, make_line
) -> None:
    link = tmp_path / "ttyUSB-modbus"
    first, second = RtuSlave(), RtuSlave()
    try:
        first.set(100)
        second.set(100)
        os.symlink(first.path, link)
        emit = Recorder()
        line = make_line([gas_spec(str(link))], emit, backoff_max_s=0.4)
        wait_until(first.polls_after(2), what="polls")
        link.unlink()
        first.close()
        wait_until(lambda: len(emit.events) == 2, what="fault and trouble")
        assert emit.kinds() == [("bus_fault", "E"), ("supervision", "E")]
        fault = emit.events[0]
        assert (fault.cid, fault.source, fault.data["port"]) == (330, str(link), str(link))
        os.symlink(second.path, link)
        wait_until(lambda: len(emit.events) == 4, what="reopened and answering")
        wait_until(second.polls_after(2), what="polls on the new port")
        assert emit.kinds()[2:] == [("bus_fault", "R"), ("supervision", "R")]
        health = line.health()["gas-1"]
        assert (health["open"], health["reopens"], health["trouble"]) == (True, 1, False)
    finally:
        first.close()
        second.close()


def test_another_device_at_the_port_path_is_found_when_a_poll_goes_unanswered(
    tmp_path: Path, make_line
) -> None:
    link = tmp_path / "ttyUSB-modbus"
    first, second = RtuSlave(), RtuSlave()
    try:
        first.set(100)
        second.set(600)
        os.symlink(first.path, link)
        emit = Recorder()
        line = make_line([gas_spec(str(link), missed=1000)], emit, backoff_max_s=0.4)
        wait_until(first.polls_after(2), what="polls")
        # Another adapter takes the name; the old detector is still there but stops answering.
        # The poller looks at the path when a poll goes unanswered.
        link.unlink()
        os.symlink(second.path, link)
        first.answering = False
        wait_until(lambda: len(emit.events) == 3, what="fault, restore and the new reading")
        assert emit.kinds() == [("bus_fault", "E"), ("bus_fault", "R"), ("gas", "E")]
        fault, back, gas = emit.events
        assert fault.data == {
            "port": str(link),
            "modbus": ["gas-1"],
            "error": f"device {link} was replaced",
        }
        assert (back.source, back.zone, back.data["port"]) == (str(link), "kitchen", str(link))
        assert gas.data["value"] == 60.0
        health = line.health()["gas-1"]
        assert (health["open"], health["reopens"], health["faults"]) == (True, 1, 1)
    finally:
        first.close()
        second.close()


def modbus_hub_config(port: str) -> Config:
    return sim_config(
        uplink={"receipts": False},
        modbus=[
            {
                "name": "gas-1",
                "port": port,
                "unit": UNIT,
                "register": REGISTER,
                "function": 4,
                "kind": "gas",
                "threshold": 50,
                "restore_below": 30,
                "poll_s": 0.05,
                "timeout_s": 0.1,
                "zone": "kitchen",
            }
        ],
    )


def test_a_gas_alarm_from_a_modbus_detector_reaches_the_commune(
    mosquitto, tmp_path: Path, detector: RtuSlave
) -> None:
    detector.set(10)
    with (
        Subscriber(mosquitto, EVENTS) as sub,
        sim_hub(mosquitto, tmp_path, modbus_hub_config(detector.path)) as hub,
    ):
        wait_until(detector.polls_after(2), what="polls")
        detector.set(75)
        [msg] = sub.wait_for(1)
        detector.set(5)
        msgs = sub.wait_for(2)
        health = hub.hub._health_extra()["modbus"]["gas-1"]
    assert msg.topic == TOPICS.event("gas")
    event = msg.json()
    assert (event["cid"], event["qualifier"], event["zone"], event["priority"]) == (
        151,
        "E",
        "kitchen",
        0,
    )
    assert event["data"]["value"] == 75.0 and event["data"]["threshold"] == 50.0
    assert msgs[1].json()["qualifier"] == "R"
    assert health["value"] == 5.0 and health["open"] is True and health["polls"] >= 3

"""The life of a serial port as the bus and the Modbus poller share it (sensors/serial_port.py),
on real pseudo-terminals opened with each driver's own opener.

The clock is the test's: time moves only when the test says, so backoff steps and down times
are exact and no test waits on the wall clock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from pty_helpers import NodeEnd

from core.events import Event
from firmware_py import codec
from sensors.modbus import open_line
from sensors.serial_bus import open_serial
from sensors.serial_port import PortLifecycle, PortUnavailable
from settings import BusConfig, ModbusConfig

log = logging.getLogger("tests.serial_port")


def bus_opener(path: str) -> Callable[[], serial.Serial]:
    return lambda: open_serial(BusConfig(name="bus-1", port=path))


def modbus_opener(path: str) -> Callable[[], serial.Serial]:
    spec = ModbusConfig.model_validate(
        {"name": "gas-1", "port": path, "unit": 7, "register": 10, "kind": "gas", "threshold": 50}
    )
    return lambda: open_line(spec)


OPENERS = {"serial-bus": bus_opener, "modbus": modbus_opener}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A lifecycle on ``path`` with the test's clock, recording what it reports."""

    def __init__(self, path: Path, opener: Callable[[str], Callable[[], Any]], **kw: Any) -> None:
        self.path = path
        self.clock = Clock()
        self.events: list[Event] = []
        self.port: PortLifecycle[Any] = PortLifecycle(
            str(path),
            opener(str(path)),
            self.events.append,
            source="bus-1",
            zone="hall",
            data={"bus": "bus-1", "port": str(path)},
            log=log,
            label="bus bus-1",
            clock=self.clock,
            **kw,
        )

    def faults(self) -> list[tuple[str, dict[str, Any]]]:
        assert all(e.kind == "bus_fault" for e in self.events), self.events
        return [(e.qualifier, e.data) for e in self.events]


@pytest.fixture(params=sorted(OPENERS))
def opener(request: pytest.FixtureRequest) -> Callable[[str], Callable[[], Any]]:
    return OPENERS[request.param]


@pytest.fixture
def ends() -> Iterator[Callable[[], NodeEnd]]:
    made: list[NodeEnd] = []

    def make() -> NodeEnd:
        made.append(NodeEnd())
        return made[-1]

    yield make
    for end in made:
        end.close()


def test_an_open_port_carries_bytes_both_ways_and_closes(
    opener: Any, ends: Callable[[], NodeEnd]
) -> None:
    end = ends()
    h = Harness(Path(end.path), opener)
    port = h.port.open()
    assert h.port.is_open and h.port.port is port and h.port.device_problem() is None
    frame = codec.encode(codec.ACK, 5, 1, 7)
    with h.port.held() as held:
        assert held is port
        held.write(frame)
    assert [f.key() for f in end.frames(1)] == [(5, 1, 7)]
    end.send(b"hello")
    assert port.read(5) == b"hello"
    h.port.close()
    assert not h.port.is_open and not port.is_open  # pyserial's own flag: really closed
    with h.port.held() as held:
        assert held is None
    assert h.events == [] and h.port.stats.opens == 1 and h.port.stats.faults == 0


def test_a_device_node_that_disappears_and_comes_back_is_one_fault_and_one_restore(
    tmp_path: Path, opener: Any, ends: Callable[[], NodeEnd]
) -> None:
    link = tmp_path / "ttyUSB0"
    first, second = ends(), ends()
    os.symlink(first.path, link)
    h = Harness(link, opener)
    h.port.open()
    # Unplugged: the device node goes away (the open port does not notice by itself).
    link.unlink()
    first.close()
    problem = h.port.device_problem()
    assert problem == f"device {link} is gone"
    h.clock.advance(2.0)
    h.port.lost(problem)
    assert not h.port.is_open and h.port.faulted
    assert h.faults() == [("E", {"bus": "bus-1", "port": str(link), "error": problem})]
    [fault] = h.events
    assert (fault.cid, fault.source, fault.zone) == (330, "bus-1", "hall")
    # While it is gone, every attempt fails and none is reported again.
    for _ in range(3):
        h.clock.advance(h.port.retry_in_s())
        with pytest.raises(PortUnavailable, match=f"^cannot open {link}: "):
            h.port.open()
    assert len(h.events) == 1 and h.port.stats.open_failures == 3
    # Plugged in again: another device at the same path.
    os.symlink(second.path, link)
    h.clock.advance(1.5)
    port = h.port.open()
    assert h.port.is_open and not h.port.faulted and h.port.device_problem() is None
    [_, (qualifier, data)] = h.faults()
    assert qualifier == "R" and data == {
        "bus": "bus-1",
        "port": str(link),
        "down_s": pytest.approx(0.2 + 0.4 + 0.8 + 1.5),
    }
    stats = h.port.stats
    assert (stats.opens, stats.open_failures, stats.reopens, stats.faults) == (2, 3, 1, 1)
    second.send(b"x")
    assert port.read(1) == b"x"


def test_a_path_that_names_another_device_is_a_replaced_port(
    tmp_path: Path, opener: Any, ends: Callable[[], NodeEnd]
) -> None:
    link = tmp_path / "ttyUSB0"
    first, second = ends(), ends()
    os.symlink(first.path, link)
    h = Harness(link, opener)
    h.port.open()
    link.unlink()
    os.symlink(second.path, link)  # the old device is still there, but not at this path
    assert h.port.device_problem() == f"device {link} was replaced"
    h.port.lost(f"device {link} was replaced")
    h.clock.advance(h.port.retry_in_s())
    h.port.open()
    assert [(q, d.get("error")) for q, d in h.faults()] == [
        ("E", f"device {link} was replaced"),
        ("R", None),
    ]
    assert h.port.device_problem() is None


def test_a_port_that_cannot_be_opened_is_one_fault_until_it_opens(
    tmp_path: Path, opener: Any, ends: Callable[[], NodeEnd]
) -> None:
    path = tmp_path / "ttyACM0"
    path.write_text("")  # there, but no tty: pyserial cannot configure it
    h = Harness(path, opener)
    with pytest.raises(PortUnavailable) as raised:
        h.port.open()
    reason = str(raised.value)
    assert reason.startswith(f"cannot open {path}: ")
    assert isinstance(raised.value.__cause__, serial.SerialException)
    assert h.faults() == [("E", {"bus": "bus-1", "port": str(path), "error": reason})]
    assert not h.port.is_open and h.port.faulted
    path.unlink()
    h.clock.advance(h.port.retry_in_s())
    with pytest.raises(PortUnavailable, match="No such file"):
        h.port.open()
    assert len(h.events) == 1 and h.port.stats.open_failures == 2
    os.symlink(ends().path, path)
    h.clock.advance(h.port.retry_in_s())
    h.port.open()
    assert [q for q, _ in h.faults()] == ["E", "R"]
    assert h.faults()[1][1]["down_s"] == pytest.approx(0.2 + 0.4)


def test_a_writer_holding_the_port_keeps_it_open_until_it_is_done(
    ends: Callable[[], NodeEnd],
) -> None:
    end = ends()
    h = Harness(Path(end.path), bus_opener)
    port = h.port.open()
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:  # an ACK written from the store thread
        with h.port.held() as held:
            holding.set()
            done.wait(10.0)
            assert held is not None
            held.write(codec.encode(codec.ACK, 5, 1, 1))

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10.0)
    closer = threading.Thread(target=h.port.lost, args=("read failed: test",))
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and port.is_open  # the loss waits for the write
    done.set()
    thread.join(10.0)
    closer.join(10.0)
    assert not port.is_open and [f.key() for f in end.frames(1)] == [(5, 1, 1)]


def test_a_long_error_is_cut_in_the_event_but_not_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path / "tty", bus_opener)
    with caplog.at_level(logging.ERROR, logger=log.name):
        h.port.lost("x" * 500)
    assert h.events[0].data["error"] == "x" * 200
    assert [r.getMessage() for r in caplog.records] == ["bus bus-1: " + "x" * 500]


def steps(h: Harness, attempts: int) -> list[float]:
    """The wait after each of ``attempts`` failed opens, each tried as soon as it is due."""
    waits = []
    for _ in range(attempts):
        assert h.port.due()
        with pytest.raises(PortUnavailable):
            h.port.open()
        waits.append(h.port.retry_in_s())
        start = h.clock.now
        h.clock.now = start + waits[-1] / 2
        assert not h.port.due()  # not before the step is over
        h.clock.now = start + waits[-1]
    return waits


def test_backoff_doubles_up_to_its_bound_and_stays_there(tmp_path: Path) -> None:
    h = Harness(tmp_path / "missing", bus_opener, backoff_min_s=0.2, backoff_max_s=5.0)
    waits = steps(h, 9)
    assert waits == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0])
    assert len(h.events) == 1 and h.port.stats.open_failures == 9


@pytest.mark.parametrize("uptime_s, next_wait", [(5.0, 0.2), (4.9, 1.6)])
def test_a_port_that_stayed_up_retries_from_the_shortest_step(
    tmp_path: Path, ends: Callable[[], NodeEnd], uptime_s: float, next_wait: float
) -> None:
    link = tmp_path / "ttyUSB0"
    h = Harness(link, bus_opener, backoff_min_s=0.2, backoff_max_s=5.0)
    assert steps(h, 3) == pytest.approx([0.2, 0.4, 0.8])
    os.symlink(ends().path, link)
    h.clock.now = 2048.0  # whole numbers: the uptime is exact
    h.port.open()
    h.clock.now += uptime_s
    h.port.lost("read failed: gone")
    # The poller waits a step after a loss: the shortest again if the port stayed up long
    # enough, else the next one.
    assert h.port.retry_in_s() == pytest.approx(next_wait)


def test_reopen_at_once_tries_straight_after_a_loss_and_backs_off_after(
    tmp_path: Path, ends: Callable[[], NodeEnd]
) -> None:
    link = tmp_path / "ttyUSB0"
    end = ends()
    os.symlink(end.path, link)
    h = Harness(link, bus_opener, reopen_at_once=True, backoff_min_s=0.2, backoff_max_s=5.0)
    h.port.open()
    link.unlink()
    h.port.lost(f"device {link} is gone")
    assert h.port.due() and h.port.retry_in_s() == 0.0
    # The loss itself costs no step: the first failure waits the shortest one.
    assert steps(h, 3) == pytest.approx([0.2, 0.4, 0.8])
    os.symlink(end.path, link)
    h.port.open()
    assert [q for q, _ in h.faults()] == ["E", "R"]

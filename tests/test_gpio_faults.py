"""GPIO faults: a hub that cannot open its pins says why and exits 2; a pin that fails while
running is a trouble event, and the other inputs and the siren go on.

Failures are real at the pin factory layer: the start-up cases run ``tuquan run`` on this
machine (where gpiozero finds no GPIO library) or on gpiozero's MockFactory; the run-time cases
give MockFactory a pin class whose reads and writes fail while ``broken`` is set, the way an
lgpio pin fails when its chip goes away.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Button, OutputDevice
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from core.errors import HardwareError
from core.events import NEW, RESTORE, Event
from gateway.alarm import AlarmRule, AlarmRules
from gateway.service import Hub
from hw_sim.board import SimBoard
from sensors.gpio import close_all
from sensors.gpio_inputs import GpioInputs
from sensors.gpio_outputs import make_outputs, output_faults
from settings import Config, parse_config
from testkit.mqtt import Subscriber
from testkit.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
TUQUAN = [sys.executable, "-m", "tuquan"]
BOUNCE_S = 0.08  # longer than the inputs' debounce, so every edge counts

HUB = """
[hub]
id = "gate-1"
commune = "phuong-1"
"""
PANIC = """
[[inputs]]
name = "panic-1"
kind = "panic"
pin = 17
"""
TAMPER = """
[[inputs]]
name = "tamper-1"
kind = "tamper"
pin = 27
"""
SIREN = """
[[outputs]]
name = "siren"
kind = "siren"
pin = 23

[[rules]]
when = ["panic"]
output = "siren"
seconds = 60
"""


class FailingPin(MockPin):
    """A mock pin on a dead chip while ``broken`` is set: reads and writes raise OSError, and
    edges are lost (the level still changes, as the wire does)."""

    broken = False

    def _call_when_changed(self, *args: Any, **kwargs: Any) -> None:
        if not self.broken:
            super()._call_when_changed(*args, **kwargs)

    def _get_state(self) -> Any:
        if self.broken:
            raise OSError(errno.EIO, "GPIO line read failed")
        return super()._get_state()

    def _set_state(self, value: Any) -> None:
        if self.broken:
            raise OSError(errno.EIO, "GPIO line write failed")
        super()._set_state(value)


class LgpioError(Exception):
    """What lgpio raises (``lgpio.error``), with its texts; lgpio is not installed here."""


class RefusingPin(MockPin):
    """A mock pin that cannot be claimed, as LGPIOPin's constructor fails on a Pi."""

    error: Exception = LgpioError("GPIO busy")

    def __init__(self, factory: Any, info: Any) -> None:
        raise self.error


def run_hub(config: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "hub.toml"
    path.write_text(config)
    environ = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    environ.update(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*TUQUAN, "run", "--config", str(path), "--data-dir", str(tmp_path / "data")]
        + ["--broker", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=REPO,
    )


def config(text: str, tmp_path: Path) -> Config:
    import tomllib

    return parse_config(tomllib.loads(text), base_dir=tmp_path, env={})


def alarm_rules(cfg: Config, outputs: Any) -> AlarmRules:
    return AlarmRules(
        [AlarmRule(frozenset(r.when), r.output, r.seconds) for r in cfg.rules], outputs
    )


# -- start-up faults ------------------------------------------------------------------------


def test_no_gpio_library_names_the_input_its_pin_and_what_to_install(tmp_path: Path) -> None:
    if importlib.util.find_spec("lgpio") or os.path.exists("/dev/gpiochip0"):
        pytest.skip("this machine has a GPIO library or chip: gpiozero would load a factory")
    result = run_hub(HUB + PANIC, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "input 'panic-1' on GPIO 17" in result.stderr
    assert "no GPIO library could be loaded" in result.stderr
    assert "lgpio: No module named 'lgpio'" in result.stderr  # why gpiozero gave up on each
    assert "python3-lgpio" in result.stderr and "pip install lgpio" in result.stderr
    assert "tuquan run --sim" in result.stderr


def test_a_pin_the_board_refuses_is_named_with_the_fix_and_exits_2(tmp_path: Path) -> None:
    # GPIO 2 has a fixed pull-up on a Pi: an input there without pull-up cannot be opened. The
    # siren, opened before it, is released on the way out.
    door = '[[inputs]]\nname = "door-1"\nkind = "door"\npin = 2\npull_up = false\n'
    result = run_hub(HUB + SIREN + PANIC + door, tmp_path, GPIOZERO_PIN_FACTORY="mock")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "input 'door-1' on GPIO 2" in result.stderr
    assert "fixed pull-up" in result.stderr and "pull_up = true" in result.stderr


def test_two_devices_on_one_pin_are_refused_by_the_config_with_exit_2(tmp_path: Path) -> None:
    # The config check catches a pin given twice before any device is opened.
    twice = PANIC.replace("panic-1", "panic-2")
    result = run_hub(HUB + PANIC + twice, tmp_path, GPIOZERO_PIN_FACTORY="mock")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "inputs[1].pin: GPIO 17 is already used by inputs[0]" in result.stderr


def test_a_pin_already_claimed_stops_the_hub_with_a_clear_error_and_frees_its_pins(
    tmp_path: Path,
) -> None:
    factory = MockFactory()
    holder = Button(17, pin_factory=factory)  # another device holds the panic button's pin
    try:
        with pytest.raises(HardwareError) as caught:
            Hub(config(HUB + SIREN + TAMPER + PANIC, tmp_path), tmp_path, pin_factory=factory)
        message = str(caught.value)
        assert caught.value.device == "input 'panic-1'" and caught.value.pin == 17
        assert "GPIO 17 is already in use" in message and "gpioinfo" in message
        # The tamper input opened before it was closed by the inputs themselves...
        Button(27, pin_factory=factory).close()
        # ... and the siren, opened by a hub that never finished, by close_all (as the CLI does).
        with pytest.raises(GPIOPinInUse):
            OutputDevice(23, pin_factory=factory)
        assert close_all() >= 1
        OutputDevice(23, pin_factory=factory).close()
    finally:
        holder.close()
        factory.close()


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (LgpioError("GPIO busy"), ["GPIO 22 is held by another program", "gpioinfo"]),
        (PermissionError(errno.EACCES, "Permission denied"), ["gpio group", "usermod -aG gpio"]),
        (LgpioError("can not open gpiochip"), ["no access to the GPIO chip", "gpio group"]),
        (FileNotFoundError(errno.ENOENT, "No such file"), ["no GPIO chip found", "USB GPIO"]),
    ],
)
def test_what_the_gpio_library_raises_becomes_what_to_do(
    error: Exception, says: list[str], tmp_path: Path
) -> None:
    silence = '[[inputs]]\nname = "silence-1"\nkind = "silence"\npin = 22\n'
    factory = MockFactory()
    try:
        factory.pin_class = type("Refusing", (RefusingPin,), {"error": error})
        with pytest.raises(HardwareError) as caught:
            GpioInputs(config(HUB + silence, tmp_path).inputs, print, factory)
        message = str(caught.value)
        assert message.startswith("cannot open input 'silence-1' on GPIO 22: ")
        assert str(error) in message
        for text in says:
            assert text in message
    finally:
        factory.close()


# -- run-time faults ------------------------------------------------------------------------


class Collected:
    """An emit that keeps what it is given (gpiozero's and the check thread's threads)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str, qualifier: str | None = None) -> list[Event]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.kind == kind and (qualifier is None or e.qualifier == qualifier)
            ]


@pytest.fixture
def board() -> Any:
    board = SimBoard()
    board.factory.pin_class = FailingPin
    yield board
    board.close()


def tap(board: SimBoard, name: str) -> None:
    board.press(name)
    time.sleep(BOUNCE_S)
    board.release(name)
    time.sleep(BOUNCE_S)


def test_an_input_failing_at_run_time_is_one_trouble_event_and_the_rest_goes_on(
    board: SimBoard, tmp_path: Path
) -> None:
    cfg = config(HUB + PANIC + TAMPER + SIREN, tmp_path)
    emitted = Collected()
    outputs = make_outputs(cfg.outputs, board.factory)
    rules = alarm_rules(cfg, outputs)

    def emit(event: Event) -> None:  # as the hub does: the rules first, then the event
        rules.handle(event)
        emitted(event)

    inputs = GpioInputs(cfg.inputs, emit, board.factory, check_interval_s=0.05)
    board.attach(cfg.inputs, cfg.outputs)
    inputs.start()
    try:
        tamper_pin = inputs.inputs["tamper-1"].button.pin
        tamper_pin.broken = True
        wait_until(lambda: emitted.of("input_fault"), what="input_fault")
        [fault] = emitted.of("input_fault")
        assert fault.qualifier == NEW and fault.source == "tamper-1"
        assert fault.data["input"] == "tamper-1" and fault.data["pin"] == 27
        assert "OSError" in fault.data["error"] and "read failed" in fault.data["error"]
        assert inputs.states() == {"panic-1": False, "tamper-1": "fault"}
        assert inputs.faults() == {"tamper-1": fault.data["error"]}
        # Several more rounds: still the one event.
        rounds = inputs.checks
        wait_until(lambda: inputs.checks >= rounds + 5, what="five more check rounds")
        assert len(emitted.of("input_fault")) == 1

        # The panic button still reports, and the siren still sounds.
        tap(board, "panic-1")
        wait_until(lambda: emitted.of("panic"), what="panic event")
        assert rules.sounding() == ["siren"] and board.outputs()["siren"] is True
        assert output_faults(outputs) == {}

        # The line comes back: one restore, and the input reads again.
        tamper_pin.broken = False
        wait_until(lambda: emitted.of("input_fault", RESTORE), what="input_fault restore")
        assert [e.qualifier for e in emitted.of("input_fault")] == [NEW, RESTORE]
        assert emitted.of("input_fault", RESTORE)[0].data == {"input": "tamper-1", "pin": 27}
        assert inputs.states() == {"panic-1": False, "tamper-1": False}
        assert inputs.faults() == {}
    finally:
        inputs.close()
        rules.close()
        for out in outputs.values():
            out.close()


def test_a_change_while_the_line_was_dead_is_reported_when_it_reads_again(
    board: SimBoard, tmp_path: Path
) -> None:
    cfg = config(HUB + PANIC + TAMPER, tmp_path)
    emitted = Collected()
    inputs = GpioInputs(cfg.inputs, emitted, board.factory, check_interval_s=0.05)
    board.attach(cfg.inputs, cfg.outputs)
    inputs.start()
    try:
        tamper_pin = inputs.inputs["tamper-1"].button.pin
        tamper_pin.broken = True
        wait_until(lambda: emitted.of("input_fault"), what="input_fault")
        board.press("tamper-1")  # the case is opened while the chip is gone: no edge
        rounds = inputs.checks
        wait_until(lambda: inputs.checks >= rounds + 3, what="three more check rounds")
        assert emitted.of("tamper") == []

        tamper_pin.broken = False
        wait_until(lambda: emitted.of("tamper"), what="the missed tamper")
        assert [(e.kind, e.qualifier) for e in emitted.events] == [
            ("input_fault", NEW),
            ("input_fault", RESTORE),
            ("tamper", NEW),
        ]
        assert emitted.of("tamper")[0].data == {"input": "tamper-1", "pin": 27, "after_fault": True}
        assert inputs.states()["tamper-1"] is True

        # gpiozero saw the change too: closing the case is the next edge, and it counts.
        time.sleep(BOUNCE_S)
        board.release("tamper-1")
        wait_until(lambda: emitted.of("tamper", RESTORE), what="tamper restore")
        assert emitted.of("tamper", RESTORE)[0].data == {"input": "tamper-1", "pin": 27}
        rounds = inputs.checks
        wait_until(lambda: inputs.checks >= rounds + 3, what="three more check rounds")
        assert len(emitted.of("tamper")) == 2 and len(emitted.of("input_fault")) == 2
    finally:
        inputs.close()


def test_an_input_unreadable_at_start_is_reported_at_start(board: SimBoard, tmp_path: Path) -> None:
    cfg = config(HUB + PANIC + TAMPER, tmp_path)
    emitted = Collected()
    inputs = GpioInputs(cfg.inputs, emitted, board.factory, check_interval_s=0)  # no thread
    try:
        inputs.inputs["tamper-1"].button.pin.broken = True
        inputs.start()
        assert [e.source for e in emitted.of("input_fault", NEW)] == ["tamper-1"]
        assert emitted.of("tamper") == []  # not reported open: its state is unknown
    finally:
        inputs.close()


def test_a_failing_siren_does_not_stop_the_alarm_and_is_logged_once(
    board: SimBoard, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(HUB + PANIC + SIREN, tmp_path)
    outputs = make_outputs(cfg.outputs, board.factory)
    rules = alarm_rules(cfg, outputs)
    panic = Event(kind="panic", zone="gate", source="panic-1")
    try:
        outputs["siren"].device.pin.broken = True
        with caplog.at_level(logging.WARNING, logger="sensors.gpio_outputs"):
            rules.handle(panic)  # would raise into the thread reporting the alarm
            rules.handle(panic)
            assert rules.silence() == ["siren"]
            failures = [r for r in caplog.records if "cannot be turned" in r.getMessage()]
            assert len(failures) == 1 and "siren (GPIO 23)" in failures[0].getMessage()
            assert "write failed" in output_faults(outputs)["siren"]

            outputs["siren"].device.pin.broken = False
            rules.handle(panic)
            assert outputs["siren"].is_active is True
            assert output_faults(outputs) == {}
            assert any("works again" in r.getMessage() for r in caplog.records)
    finally:
        rules.close()
        for out in outputs.values():
            out.close()


def test_the_hub_publishes_an_input_fault_and_its_restore_and_keeps_the_alarm_path(
    mosquitto: Any, tmp_path: Path
) -> None:
    # The whole hub over a real broker: the trouble goes out as Contact ID 380, health shows
    # the input as a fault, and a panic meanwhile is published and sounds the siren.
    uplink = "[uplink]\nreceipts = false\nhealth_interval_s = 0.2\n"
    cfg = config(HUB + uplink + PANIC + TAMPER + SIREN, tmp_path)
    factory = MockFactory(pin_class=FailingPin)
    topics = "tuquan/v1/phuong-1/gate-1/"
    hub = Hub(cfg, tmp_path / "data", pin_factory=factory, broker=(mosquitto.host, mosquitto.port))
    hub.inputs.check_interval_s = 0.05
    try:
        with Subscriber(mosquitto, topics + "event/+", topics + "health") as sub:
            hub.start()
            wait_until(lambda: hub.uplink.connected, what="hub online")
            tamper_pin = hub.inputs.inputs["tamper-1"].button.pin
            tamper_pin.broken = True

            def events(kind: str) -> list[Any]:
                return [m.json() for m in sub.messages if m.topic == topics + f"event/{kind}"]

            def health_says_fault(msgs: list[Any]) -> bool:
                return any(
                    m.topic.endswith("/health") and m.json()["inputs"].get("tamper-1") == "fault"
                    for m in msgs
                )

            sub.wait_until(lambda msgs: bool(events("input_fault")))
            [fault] = events("input_fault")
            assert (fault["cid"], fault["qualifier"], fault["priority"]) == (380, "E", 1)
            assert fault["data"]["input"] == "tamper-1" and fault["data"]["pin"] == 27
            assert "read failed" in fault["data"]["error"]
            sub.wait_until(health_says_fault)

            panic_pin = hub.inputs.inputs["panic-1"].button.pin
            panic_pin.drive_high()
            time.sleep(BOUNCE_S)
            panic_pin.drive_low()
            sub.wait_until(lambda msgs: bool(events("panic")))
            assert hub.outputs["siren"].is_active and hub.rules.sounding() == ["siren"]

            tamper_pin.broken = False
            sub.wait_until(lambda msgs: len(events("input_fault")) == 2)
            assert [e["qualifier"] for e in events("input_fault")] == ["E", "R"]
            assert len(events("panic")) == 1 and events("tamper") == []
    finally:
        hub.stop(drain_timeout_s=1.0)
        factory.close()

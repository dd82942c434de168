"""The local alarm rules on their own, over gpiozero outputs on a MockFactory."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory

from core.events import NEW, RESTORE, Event
from gateway.alarm import AlarmRule, AlarmRules
from testkit.waiting import wait_until


@pytest.fixture
def outputs() -> Iterator[dict[str, OutputDevice]]:
    factory = MockFactory()
    devices = {
        "siren": OutputDevice(23, pin_factory=factory),
        "strobe": OutputDevice(24, pin_factory=factory),
    }
    yield devices
    for d in devices.values():
        d.close()
    factory.close()


def ev(kind: str, qualifier: str = NEW) -> Event:
    return Event(kind=kind, zone="z", source="s", qualifier=qualifier)


def test_matching_alarms_sound_their_outputs_and_others_do_not(
    outputs: dict[str, OutputDevice],
) -> None:
    changes: list[tuple[str, bool, str]] = []
    rules = AlarmRules(
        [
            AlarmRule(frozenset({"panic", "fire"}), "siren", 60),
            AlarmRule(frozenset({"fire"}), "strobe", 60),
        ],
        outputs,
        on_change=lambda *c: changes.append(c),
    )
    try:
        rules.handle(ev("tamper"))
        rules.handle(ev("panic", RESTORE))  # a restore never sounds anything
        assert rules.sounding() == [] and not outputs["siren"].is_active
        rules.handle(ev("fire"))
        assert rules.sounding() == ["siren", "strobe"]
        assert outputs["siren"].is_active and outputs["strobe"].is_active
        assert [(n, on) for n, on, _ in changes] == [("siren", True), ("strobe", True)]
    finally:
        rules.close()
    assert not outputs["siren"].is_active  # close silences


def test_an_output_goes_off_when_its_time_is_up_and_a_new_alarm_extends_it(
    outputs: dict[str, OutputDevice],
) -> None:
    rules = AlarmRules([AlarmRule(frozenset({"panic"}), "siren", 2.0)], outputs)
    try:
        rules.handle(ev("panic"))
        time.sleep(1.2)
        rules.handle(ev("panic"))  # moves the deadline to 3.2 s from the first alarm
        time.sleep(1.2)  # 2.4 s: past the first deadline, 0.8 s before the second
        assert outputs["siren"].is_active
        wait_until(lambda: not outputs["siren"].is_active, 5, "siren off after its time")
        assert rules.sounding() == []
    finally:
        rules.close()


def test_silence_turns_off_what_sounds_and_says_what_it_was(
    outputs: dict[str, OutputDevice],
) -> None:
    rules = AlarmRules([AlarmRule(frozenset({"panic"}), "siren", 60)], outputs)
    try:
        rules.handle(ev("panic"))
        assert rules.silence("test") == ["siren"]
        assert not outputs["siren"].is_active and rules.sounding() == []
        assert rules.silence("again") == []  # nothing left to silence
        rules.handle(ev("silenced"))  # a local silence button's event
        rules.handle(ev("panic"))
        assert outputs["siren"].is_active  # a new alarm after a silence sounds again
    finally:
        rules.close()

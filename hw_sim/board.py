"""The simulated board: gpiozero's MockFactory, and hands that press its buttons.

The hub builds its real gpiozero devices on this factory, exactly as it would on lgpio. The
board knows the wiring from the hub's config (which pin each input and output is on, its pull
resistor and active level), not from the hub's objects, and only uses gpiozero's public mock
API: ``factory.pin(n)`` is the same pin the hub's device holds, ``drive_high()``/``drive_low()``
move an input's level, ``state`` reads a level. So a simulated press goes through gpiozero's
own edge detection and callbacks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockFactory

from core.errors import TuquanError
from sensors.gpio_inputs import InputSpec, active_level
from sensors.gpio_outputs import OutputSpec


class SimError(TuquanError):
    """A simulator request that cannot be carried out (unknown input, bad argument)."""


@dataclass(frozen=True)
class _Wire:
    pin: Any  # gpiozero.pins.mock.MockPin
    active: bool  # the level (True: high) that means pressed, or sounding


class SimBoard:
    def __init__(self) -> None:
        self.factory = MockFactory()
        self._inputs: dict[str, _Wire] = {}
        self._outputs: dict[str, _Wire] = {}
        # One pending release per input: a new hold replaces the last one, so holding a
        # button again and again does not pile up timers for the life of the simulator.
        self._timers: dict[str, threading.Timer] = {}

    def attach(self, inputs: Iterable[InputSpec], outputs: Iterable[OutputSpec]) -> None:
        """Wire the board as the config says (each input's pin, pull and active level, each
        output's pin and active level) and put every input at rest: a mock pin floats low,
        which would be "pressed" for an active-low input without a pull resistor. Call it
        before the hub opens its devices, so that they read the resting level from the start."""
        self._inputs = {
            i.name: _Wire(pin, active_level(i.pull_up, i.active_high))
            for i in inputs
            if (pin := self._pin(i.pin)) is not None
        }
        self._outputs = {
            o.name: _Wire(pin, o.active_high)
            for o in outputs
            if (pin := self._pin(o.pin)) is not None
        }
        for name in self._inputs:
            self.release(name)

    def _pin(self, number: int) -> Any:
        """The mock pin, or None for one the factory refuses (a GPIO the board has not): the
        hub says what to do about it when it opens its device there."""
        try:
            return self.factory.pin(number)
        except Exception:
            return None

    def _wire(self, name: str) -> _Wire:
        try:
            return self._inputs[name]
        except KeyError:
            known = ", ".join(sorted(self._inputs)) or "none"
            raise SimError(f"no input named {name!r} (inputs: {known})") from None

    def press(self, name: str) -> None:
        self._drive(name, pressed=True)

    def release(self, name: str) -> None:
        self._drive(name, pressed=False)

    def _drive(self, name: str, pressed: bool) -> None:
        wire = self._wire(name)
        if pressed == wire.active:
            wire.pin.drive_high()
        else:
            wire.pin.drive_low()

    def hold(self, name: str, seconds: float) -> None:
        """Press now and release after ``seconds`` (without blocking the caller)."""
        if not 0 < seconds <= 600:
            raise SimError("hold seconds must be in (0, 600]")
        self.press(name)
        previous = self._timers.pop(name, None)
        if previous is not None:
            previous.cancel()
        timer = threading.Timer(seconds, lambda: self._release_held(name, timer))
        timer.daemon = True
        self._timers[name] = timer
        timer.start()

    def _release_held(self, name: str, timer: threading.Timer) -> None:
        """A hold's timer thread: let go, and forget the timer (unless a new hold replaced it)."""
        if self._timers.get(name) is timer:
            del self._timers[name]
        self.release(name)

    def inputs(self) -> dict[str, bool]:
        """Each input: pressed (its pin at the active level) or not."""
        return {name: bool(w.pin.state) == w.active for name, w in self._inputs.items()}

    def outputs(self) -> dict[str, bool]:
        """Each output: sounding or lit (its pin at the active level) or not."""
        return {name: bool(w.pin.state) == w.active for name, w in self._outputs.items()}

    def release_all(self) -> None:
        """Let go of every input (so gpiozero's hold threads end at once). An input already
        at rest gives no edge: a mock pin calls back only when its level changes."""
        for timer in list(self._timers.values()):
            timer.cancel()
        self._timers.clear()
        for name in self._inputs:
            self.release(name)

    def close(self) -> None:
        for timer in list(self._timers.values()):
            timer.cancel()
        self._timers.clear()
        self.factory.close()

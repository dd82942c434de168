"""The simulated board: gpiozero's MockFactory, and hands that press its buttons.

The hub builds its real gpiozero devices on this factory, exactly as it would on lgpio; the
board only drives the mock pins, so a simulated press goes through gpiozero's own edge
detection and callbacks.
"""

from __future__ import annotations

import threading
from typing import Any

from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from core.errors import TuquanError


class SimError(TuquanError):
    """A simulator request that cannot be carried out (unknown input, bad argument)."""


class SimBoard:
    def __init__(self) -> None:
        self.factory = MockFactory()
        self._inputs: dict[str, Device] = {}
        self._outputs: dict[str, Device] = {}
        # One pending release per input: a new hold replaces the last one, so holding a
        # button again and again does not pile up timers for the life of the simulator.
        self._timers: dict[str, threading.Timer] = {}

    def attach(self, inputs: dict[str, Any], outputs: dict[str, Device]) -> None:
        """Learn the hub's devices: ``inputs`` maps names to objects with a ``button``."""
        self._inputs = {name: inp.button for name, inp in inputs.items()}
        self._outputs = dict(outputs)

    def _button(self, name: str) -> Any:
        try:
            return self._inputs[name]
        except KeyError:
            known = ", ".join(sorted(self._inputs)) or "none"
            raise SimError(f"no input named {name!r} (inputs: {known})") from None

    def press(self, name: str) -> None:
        self._drive(name, active=True)

    def release(self, name: str) -> None:
        self._drive(name, active=False)

    def _drive(self, name: str, active: bool) -> None:
        button = self._button(name)
        # gpiozero keeps the active level private; it is high unless the input pulls up.
        active_high = bool(getattr(button, "_active_state", not button.pull_up))
        if active == active_high:
            button.pin.drive_high()
        else:
            button.pin.drive_low()

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
        return {name: bool(b.is_active) for name, b in self._inputs.items()}

    def outputs(self) -> dict[str, bool]:
        return {name: bool(d.is_active) for name, d in self._outputs.items()}

    def release_all(self) -> None:
        """Let go of every input (so gpiozero's hold threads end at once)."""
        for timer in list(self._timers.values()):
            timer.cancel()
        self._timers.clear()
        for name, button in self._inputs.items():
            if button.is_active:
                self.release(name)

    def close(self) -> None:
        for timer in list(self._timers.values()):
            timer.cancel()
        self._timers.clear()
        self.factory.close()

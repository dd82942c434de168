"""GPIO inputs (panic buttons, tamper switches, door contacts) and outputs (siren, LED).

gpiozero devices over an injected pin factory: lgpio on a Pi, MockFactory in the simulator and
tests. gpiozero runs the ``when_*`` callbacks on its own threads; they build an event and hand it
to ``emit`` (which must be quick and thread-safe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from gpiozero import Button, OutputDevice

from gateway.events import NEW, RESTORE, Event

log = logging.getLogger(__name__)

# Inputs whose "active" state is a condition that lasts (so release is a restore).
STATE_KINDS = {"tamper", "door"}


class InputSpec(Protocol):
    """What an input needs from its configuration (gateway.config.InputConfig fits)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def pin(self) -> int: ...

    @property
    def pull_up(self) -> bool | None: ...

    @property
    def active_high(self) -> bool | None: ...

    @property
    def bounce_s(self) -> float | None: ...

    @property
    def hold_s(self) -> float | None: ...

    @property
    def hold_kind(self) -> str | None: ...

    @property
    def zone(self) -> str: ...

    @property
    def restore(self) -> bool: ...


class OutputSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def pin(self) -> int: ...

    @property
    def active_high(self) -> bool: ...


class GpioInput:
    """One input: press reports its kind, a long press its ``hold_kind``, release a restore."""

    def __init__(
        self, spec: InputSpec, emit: Callable[[Event], object], pin_factory: Any = None
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.muted = False
        self.button = Button(
            spec.pin,
            pull_up=spec.pull_up,
            active_state=spec.active_high,
            bounce_time=spec.bounce_s or None,
            hold_time=spec.hold_s or 1.0,
            pin_factory=pin_factory,
        )
        self.button.when_pressed = self._pressed
        self.button.when_released = self._released
        if spec.hold_s and spec.hold_kind:
            self.button.when_held = self._held

    @property
    def is_active(self) -> bool:
        return bool(self.button.is_active)

    def report_initial_state(self) -> None:
        """A tamper switch already open (or a door already open) at start is reported."""
        if self.spec.kind in STATE_KINDS and self.is_active:
            self._send(self.spec.kind, NEW, initial=True)

    def _pressed(self) -> None:
        self._send("silenced" if self.spec.kind == "silence" else self.spec.kind, NEW)

    def _released(self) -> None:
        if self.spec.restore and self.spec.kind != "silence":
            self._send(self.spec.kind, RESTORE)

    def _held(self) -> None:
        if self.spec.hold_kind:
            self._send(self.spec.hold_kind, NEW, held_s=self.spec.hold_s)

    def _send(self, kind: str, qualifier: str, **data: Any) -> None:
        if self.muted:  # shutting down: a button still held must not report as it closes
            return
        try:
            self.emit(
                Event(
                    kind=kind,
                    zone=self.spec.zone,
                    source=self.spec.name,
                    qualifier=qualifier,
                    data={"input": self.spec.name, "pin": self.spec.pin, **data},
                )
            )
        except Exception:
            # Never let a failure escape into gpiozero's callback thread.
            log.exception("could not report %s from input %s", kind, self.spec.name)

    def close(self) -> None:
        self.muted = True
        self.button.close()


class GpioInputs:
    def __init__(
        self,
        specs: Iterable[InputSpec],
        emit: Callable[[Event], object],
        pin_factory: Any = None,
    ) -> None:
        self.inputs = {s.name: GpioInput(s, emit, pin_factory) for s in specs}

    def start(self) -> None:
        for inp in self.inputs.values():
            inp.report_initial_state()

    def states(self) -> dict[str, bool]:
        return {name: inp.is_active for name, inp in self.inputs.items()}

    def mute(self) -> None:
        """Stop reporting (the first step of a shutdown)."""
        for inp in self.inputs.values():
            inp.muted = True

    def close(self) -> None:
        self.mute()
        for inp in self.inputs.values():
            inp.close()


def make_outputs(specs: Iterable[OutputSpec], pin_factory: Any = None) -> dict[str, OutputDevice]:
    """Sirens, buzzers, LEDs and relays: all plain on/off outputs, off at start."""
    return {
        s.name: OutputDevice(
            s.pin, active_high=s.active_high, initial_value=False, pin_factory=pin_factory
        )
        for s in specs
    }

"""GPIO inputs: panic buttons, tamper switches, door contacts.

gpiozero Buttons over an injected pin factory (``sensors/gpio.py`` opens them). gpiozero runs
the ``when_*`` callbacks on its own threads; they build an event and hand it to ``emit`` (which
must be quick and thread-safe).

While running, GpioInputs' check thread reads every input every ``check_interval_s``. An input
whose read fails (a USB GPIO expander unplugged, a kernel error) is reported once as an
``input_fault`` trouble event and shown as ``"fault"`` in ``states()``; when it reads again, an
``input_fault`` restore. The other inputs go on as before. A line that failed may also have
delivered no edges: if the input reads otherwise than gpiozero last saw it, that change is
reported after the restore (marked ``after_fault``), a tamper switch opened meanwhile included,
and gpiozero's own state is brought up to date so the next edge counts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from gpiozero import Button

from core.events import NEW, RESTORE, Event
from sensors.gpio import error_text, open_device

log = logging.getLogger(__name__)

# Inputs whose "active" state is a condition that lasts (so release is a restore).
STATE_KINDS = {"tamper", "door"}
CHECK_INTERVAL_S = 2.0  # how often the check thread reads every input
FAULT = "fault"  # an input's state in states() while its pin cannot be read


class InputSpec(Protocol):
    """What an input needs from its configuration (settings.InputConfig fits)."""

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


def active_level(pull_up: bool | None, active_high: bool | None) -> bool:
    """The level (True: high) at which an input reads active, as gpiozero's Button decides it:
    with a pull resistor it follows from the pull (pulled up: active low, the switch goes to
    GND; pulled down: active high), without one (``pull_up`` None) ``active_high`` says it."""
    if pull_up is None:
        if active_high is None:
            raise ValueError("an input without a pull resistor needs active_high")
        return active_high
    return not pull_up


class _Button(Button):  # type: ignore[misc]  # gpiozero ships no types
    """gpiozero's Button, plus catching up with a change whose edge never came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # gpiozero's edge thread and the check thread both move the button's last state: one
        # at a time, so a change is reported once.
        self._events_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def _fire_events(self, ticks: Any, new_active: Any) -> None:
        with self._events_lock:
            super()._fire_events(ticks, new_active)

    def catch_up(self) -> None:
        """Fire the callbacks for the state read now if it differs from the last one seen
        (no-op otherwise); raises what the pin raises when it cannot be read."""
        self._fire_events(self.pin_factory.ticks(), bool(self.is_active))


class GpioInput:
    """One input: press reports its kind, a long press its ``hold_kind``, release a restore."""

    def __init__(
        self, spec: InputSpec, emit: Callable[[Event], object], pin_factory: Any = None
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.muted = False
        self.fault: str | None = None  # why the pin cannot be read; None while it reads
        self._catching_up: threading.Thread | None = None  # the thread reporting a missed edge
        self.button = open_device(
            f"input {spec.name!r}",
            spec.pin,
            lambda factory: _Button(
                spec.pin,
                pull_up=spec.pull_up,
                active_state=spec.active_high,
                bounce_time=spec.bounce_s or None,
                hold_time=spec.hold_s or 1.0,
                pin_factory=factory,
            ),
            pin_factory,
        )
        self.button.when_pressed = self._pressed
        self.button.when_released = self._released
        if spec.hold_s and spec.hold_kind:
            self.button.when_held = self._held

    def read(self) -> bool:
        """The pin's state now; raises what the pin raises when it cannot be read."""
        return bool(self.button.is_active)

    @property
    def is_active(self) -> bool:
        return self.read()

    def state(self) -> bool | str:
        """Active or not, or ``"fault"`` while the pin cannot be read."""
        if self.fault is not None:
            return FAULT
        try:
            return self.read()
        except Exception:
            return FAULT

    def check(self) -> None:
        """Read the pin once (the check thread); report a failing read, and its end, once each."""
        try:
            self.read()
        except Exception as exc:
            if self.fault is None:
                self.fault = error_text(exc)
                log.error(
                    "input %s (GPIO %d) cannot be read: %s", self.spec.name, self.spec.pin, exc
                )
                self._send("input_fault", NEW, error=self.fault)
            return
        if self.fault is not None:
            self.fault = None
            log.warning("input %s (GPIO %d) reads again", self.spec.name, self.spec.pin)
            self._send("input_fault", RESTORE)
            self._catch_up()

    def _catch_up(self) -> None:
        """Report a change the dead line gave no edge for (the check thread)."""
        self._catching_up = threading.current_thread()
        try:
            self.button.catch_up()
        except Exception:  # failing again: the next round reports it
            log.debug("input %s: no catch-up read", self.spec.name, exc_info=True)
        finally:
            self._catching_up = None

    def report_initial_state(self) -> None:
        """A tamper switch already open (or a door already open) at start is reported."""
        if self.spec.kind in STATE_KINDS and self.fault is None and self.state() is True:
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
        if self._catching_up is threading.current_thread() and kind != "input_fault":
            data["after_fault"] = True  # it changed while the line was dead, not just now
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
        try:
            self.button.close()
        except Exception:  # a chip that went away: the other inputs must still close
            log.exception("could not close input %s", self.spec.name)


class GpioInputs:
    """The hub's inputs, and the thread that notices one that can no longer be read."""

    def __init__(
        self,
        specs: Iterable[InputSpec],
        emit: Callable[[Event], object],
        pin_factory: Any = None,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.check_interval_s = check_interval_s
        self.checks = 0  # rounds of check() done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.inputs: dict[str, GpioInput] = {}
        try:
            for spec in specs:
                self.inputs[spec.name] = GpioInput(spec, emit, pin_factory)
        except BaseException:
            self.close()  # the pins opened before the one that failed
            raise

    def start(self) -> None:
        self.check()  # an input unreadable at start is reported now, not a round later
        for inp in self.inputs.values():
            inp.report_initial_state()
        if self.inputs and self.check_interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="gpio-check", daemon=True)
            self._thread.start()

    def check(self) -> None:
        """Read every input once (the check thread; the caller's thread in start())."""
        for inp in self.inputs.values():
            inp.check()
        self.checks += 1

    def _run(self) -> None:
        """The check thread: one round every ``check_interval_s`` until close()."""
        while not self._stop.wait(self.check_interval_s):
            try:
                self.check()
            except Exception:  # a bug here must not end the checks
                log.exception("GPIO input check failed")

    def states(self) -> dict[str, bool | str]:
        """Each input's state: True when active, ``"fault"`` while it cannot be read."""
        return {name: inp.state() for name, inp in self.inputs.items()}

    def faults(self) -> dict[str, str]:
        """Inputs that cannot be read now, with the error."""
        return {name: inp.fault for name, inp in self.inputs.items() if inp.fault is not None}

    def mute(self) -> None:
        """Stop reporting (the first step of a shutdown)."""
        for inp in self.inputs.values():
            inp.muted = True

    def close(self) -> None:
        self.mute()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for inp in self.inputs.values():
            inp.close()

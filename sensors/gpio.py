"""GPIO inputs (panic buttons, tamper switches, door contacts) and outputs (siren, LED).

gpiozero devices over an injected pin factory: lgpio on a Pi, MockFactory in the simulator and
tests. gpiozero runs the ``when_*`` callbacks on its own threads; they build an event and hand it
to ``emit`` (which must be quick and thread-safe).

Faults:

- A device that cannot be opened (no GPIO library, not a Pi, a pin held by another program, no
  access to ``/dev/gpiochip*``...) raises :class:`~core.errors.HardwareError` naming the
  device, its pin, the underlying error and what to do; ``tuquan run`` prints it and exits 2.
  What this module opened before the failing device is closed (:func:`close_all`).
- While running, GpioInputs' check thread reads every input every ``check_interval_s``. An input
  whose read fails (a USB GPIO expander unplugged, a kernel error) is reported once as an
  ``input_fault`` trouble event and shown as ``"fault"`` in ``states()``; when it reads again,
  an ``input_fault`` restore. The other inputs go on as before. A line that failed may also
  have delivered no edges: if the input reads otherwise than gpiozero last saw it, that change
  is reported after the restore (marked ``after_fault``), a tamper switch opened meanwhile
  included, and gpiozero's own state is brought up to date so the next edge counts.
- Outputs never raise out of ``on()``/``off()``: the alarm rules call them on the thread that
  reports an alarm, and that alarm must still be recorded and published. A failure is logged
  once per change (failing, working again) and kept in ``GpioOutput.fault``.
"""

from __future__ import annotations

import errno
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from gpiozero import Button, Device, OutputDevice
from gpiozero.exc import (
    BadPinFactory,
    GPIOPinInUse,
    PinFactoryFallback,
    PinFixedPull,
    PinInvalidPin,
    PinUnknownPi,
)

from core.errors import HardwareError
from core.events import NEW, RESTORE, Event

log = logging.getLogger(__name__)

# Inputs whose "active" state is a condition that lasts (so release is a restore).
STATE_KINDS = {"tamper", "door"}
CHECK_INTERVAL_S = 2.0  # how often the check thread reads every input
FAULT = "fault"  # an input's state in states() while its pin cannot be read
ERROR_MAX_CHARS = 200  # of an error's text in an event

INSTALL_LGPIO = (
    "on a Raspberry Pi install python3-lgpio (`sudo apt install python3-lgpio`) or "
    "`pip install lgpio` (tuquan[pi]); on another machine run the simulator (`tuquan run --sim`)"
)
GPIO_ACCESS = (
    "add the service user to the gpio group (`sudo usermod -aG gpio tuquan`, then restart the "
    "service) and check that /dev/gpiochip* exists and the unit allows it"
)

T = TypeVar("T")

# Every gpiozero device this module opened, so that a hub that fails half-built can release the
# pins it had claimed (its objects are unreachable by then). Weak: closed devices just go.
_OPENED: weakref.WeakSet[Any] = weakref.WeakSet()


class InputSpec(Protocol):
    """What an input needs from its configuration (config.InputConfig fits)."""

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


# -- opening devices ----------------------------------------------------------------------


def _open(device: str, pin: int, make: Callable[[Any], T], pin_factory: Any) -> T:
    """Build one gpiozero device with ``make(factory)``; whatever opening its pin raises
    becomes a HardwareError that says what to do."""
    factory = pin_factory if pin_factory is not None else _default_factory(device, pin)
    try:
        made = make(factory)
    except Exception as exc:  # gpiozero's errors, lgpio.error, OSError from /dev/gpiochip*
        raise HardwareError(device, pin, _explain(device, pin, exc)) from exc
    _OPENED.add(made)
    return made


def _default_factory(device: str, pin: int) -> Any:
    """gpiozero's default pin factory (lgpio on a Pi), loaded once.

    gpiozero tries each library in turn and only warns why each failed; those reasons are what
    an operator needs, so they are caught here and put in the error.
    """
    if Device.pin_factory is not None:
        return Device.pin_factory
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Device.ensure_pin_factory()
        except Exception as exc:
            tried = [
                str(w.message).removeprefix("Falling back from ")
                for w in caught
                if issubclass(w.category, PinFactoryFallback)
            ]
            raise HardwareError(device, pin, _explain(device, pin, exc, tried)) from exc
    for w in caught:  # e.g. "falling back to the native factory": worth a line in the log
        log.warning("GPIO: %s", w.message)
    return Device.pin_factory


def _explain(device: str, pin: int, exc: BaseException, tried: Sequence[str] = ()) -> str:
    problem, todo = _diagnose(pin, exc, tried)
    return f"cannot open {device} on GPIO {pin}: {problem}. What to do: {todo}"


def _diagnose(pin: int, exc: BaseException, tried: Sequence[str]) -> tuple[str, str]:
    """(what is wrong, what to do) for an error raised while opening ``pin``."""
    error = f"{type(exc).__name__}: {exc}"
    text = str(exc).lower()
    if isinstance(exc, BadPinFactory):
        if not tried:  # GPIOZERO_PIN_FACTORY names a factory gpiozero does not have
            return (
                f"the pin factory chosen by GPIOZERO_PIN_FACTORY does not exist ({error})",
                "unset GPIOZERO_PIN_FACTORY (lgpio is the default) or set it to lgpio",
            )
        problem = f"no GPIO library could be loaded ({'; '.join(tried)})"
        lgpio = next((t.lower() for t in tried if t.startswith("lgpio:")), "")
        if "no module named" in lgpio or not lgpio:
            return problem, INSTALL_LGPIO
        if _is_access(lgpio):
            return problem, GPIO_ACCESS
        if "revision" in lgpio:
            return problem, "this is not a Raspberry Pi: run the simulator (`tuquan run --sim`)"
        return problem, INSTALL_LGPIO
    if isinstance(exc, GPIOPinInUse):
        return (
            f"GPIO {pin} is already in use by another device in this config or another "
            f"program ({error})",
            "give each input and output its own pin (`tuquan check-config FILE`), and check "
            "`gpioinfo` for a program holding the line",
        )
    if "busy" in text or getattr(exc, "errno", None) == errno.EBUSY:
        return (
            f"GPIO {pin} is held by another program ({error})",
            "find it with `gpioinfo` (the line's consumer), stop it, or wire this device to "
            "another pin",
        )
    if isinstance(exc, PinFixedPull):
        return (
            f"GPIO {pin} has a fixed pull-up resistor on this board ({error})",
            "GPIO 2 and 3 (the I2C pins) always pull up: set pull_up = true for this input "
            "(switch to GND), or use another pin",
        )
    if isinstance(exc, PinInvalidPin):
        return (
            f"this board has no GPIO {pin} ({error})",
            "use a BCM GPIO number the board has (0 to 27 on a 40-pin header)",
        )
    if isinstance(exc, PinUnknownPi):
        return (
            f"gpiozero cannot tell which Raspberry Pi this is ({error})",
            "on a machine that is not a Pi, run the simulator (`tuquan run --sim`)",
        )
    if isinstance(exc, ImportError):
        return f"the GPIO library is missing ({error})", INSTALL_LGPIO
    if _is_access(text) or isinstance(exc, PermissionError):
        return f"no access to the GPIO chip ({error})", GPIO_ACCESS
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENODEV:
        return (
            f"no GPIO chip found ({error})",
            "check that /dev/gpiochip* exists (the GPIO driver is loaded, a USB GPIO expander "
            "is plugged in)",
        )
    return (
        f"the GPIO library refused it ({error})",
        "check the pin in the config, and `dmesg` for GPIO errors",
    )


def _is_access(text: str) -> bool:
    return any(s in text for s in ("permission", "not permitted", "open gpiochip"))


def close_all() -> int:
    """Close every device this module opened that is still open; returns how many.

    For a process whose hub failed half-built (the siren's pin claimed, then an input's pin
    refused): that hub cannot be stopped, and its pins must not stay claimed.
    """
    closed = 0
    for device in list(_OPENED):
        if not device.closed:
            try:
                device.close()
            except Exception:
                log.exception("could not close %r", device)
            closed += 1
    return closed


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


# -- inputs -------------------------------------------------------------------------------


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
        self.button = _open(
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
                self.fault = _error_text(exc)
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


# -- outputs ------------------------------------------------------------------------------


class GpioOutput:
    """A siren, buzzer, LED or relay: plain on/off, off at start; never raises from on/off."""

    def __init__(self, spec: OutputSpec, pin_factory: Any = None) -> None:
        self.name = spec.name
        self.pin = spec.pin
        self.fault: str | None = None  # why the last change failed; None once one works
        self._lock = threading.Lock()
        self.device = _open(
            f"output {spec.name!r}",
            spec.pin,
            lambda factory: OutputDevice(
                spec.pin, active_high=spec.active_high, initial_value=False, pin_factory=factory
            ),
            pin_factory,
        )

    def on(self) -> None:
        self._set(True)

    def off(self) -> None:
        self._set(False)

    def _set(self, active: bool) -> None:
        """Any thread (the alarm rules run on the thread reporting an alarm, or their timer)."""
        with self._lock:
            try:
                if active:
                    self.device.on()
                else:
                    self.device.off()
            except Exception as exc:
                if self.fault is None:
                    log.error(
                        "output %s (GPIO %d) cannot be turned %s: %s",
                        self.name,
                        self.pin,
                        "on" if active else "off",
                        exc,
                    )
                self.fault = _error_text(exc)
                return
            if self.fault is not None:
                self.fault = None
                log.warning("output %s (GPIO %d) works again", self.name, self.pin)

    @property
    def is_active(self) -> bool:
        """The pin's state, False when it cannot be read."""
        try:
            return bool(self.device.is_active)
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.device.close()
        except Exception:
            log.exception("could not close output %s", self.name)


def make_outputs(specs: Iterable[OutputSpec], pin_factory: Any = None) -> dict[str, GpioOutput]:
    """Sirens, buzzers, LEDs and relays, off at start."""
    outputs: dict[str, GpioOutput] = {}
    try:
        for spec in specs:
            outputs[spec.name] = GpioOutput(spec, pin_factory)
    except BaseException:
        for out in outputs.values():  # the pins opened before the one that failed
            out.close()
        raise
    return outputs


def output_faults(outputs: Mapping[str, GpioOutput]) -> dict[str, str]:
    """Outputs whose last change failed, with the error."""
    return {name: out.fault for name, out in outputs.items() if out.fault is not None}

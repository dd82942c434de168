"""Opening gpiozero devices, and saying what to do when a pin cannot be opened.

The GPIO driver is three modules: this one (opening devices over an injected pin factory: lgpio
on a Pi, MockFactory in the simulator and tests), ``sensors/gpio_inputs.py`` (panic buttons,
tamper switches, door contacts, and the thread that checks them) and ``sensors/gpio_outputs.py``
(siren, buzzer, LED, relay).

A device that cannot be opened (no GPIO library, not a Pi, a pin held by another program, no
access to ``/dev/gpiochip*``...) raises :class:`~core.errors.HardwareError` naming the device,
its pin, the underlying error and what to do; ``tuquan run`` prints it and exits 2. What was
opened before the failing device is closed (:func:`close_all`).
"""

from __future__ import annotations

import errno
import logging
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gpiozero import Device
from gpiozero.exc import (
    BadPinFactory,
    GPIOPinInUse,
    PinFactoryFallback,
    PinFixedPull,
    PinInvalidPin,
    PinUnknownPi,
)

from core.errors import HardwareError

log = logging.getLogger(__name__)

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


def open_device(device: str, pin: int, make: Callable[[Any], T], pin_factory: Any) -> T:
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


def error_text(exc: BaseException) -> str:
    """An error as an event carries it: its type and text, bounded."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]

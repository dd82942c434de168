"""GPIO outputs: siren, buzzer, LED, relay; plain on/off over gpiozero's OutputDevice.

Outputs never raise out of ``on()``/``off()``: the alarm rules call them on the thread that
reports an alarm, and that alarm must still be recorded and published. A failure is logged once
per change (failing, working again) and kept in ``GpioOutput.fault``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gpiozero import OutputDevice

from sensors.gpio import error_text, open_device

log = logging.getLogger(__name__)


class OutputSpec(Protocol):
    """What an output needs from its configuration (settings.OutputConfig fits)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def pin(self) -> int: ...

    @property
    def active_high(self) -> bool: ...


class GpioOutput:
    """A siren, buzzer, LED or relay: plain on/off, off at start; never raises from on/off."""

    def __init__(self, spec: OutputSpec, pin_factory: Any = None) -> None:
        self.name = spec.name
        self.pin = spec.pin
        self.fault: str | None = None  # why the last change failed; None once one works
        self._lock = threading.Lock()
        self.device = open_device(
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
                self.fault = error_text(exc)
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

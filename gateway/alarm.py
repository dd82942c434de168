"""Local alarm logic: alarms sound outputs (the siren) for a while, with no network involved.

Runs on whichever thread emits the event (a gpiozero callback, the serial reader...), before the
event is committed: the siren must not wait for the disk or the broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.events import Event

log = logging.getLogger(__name__)


class Switch(Protocol):
    """An output: gpiozero's OutputDevice, LED and Buzzer all fit."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    @property
    def is_active(self) -> bool: ...


@dataclass(frozen=True)
class AlarmRule:
    when: frozenset[str]
    output: str
    seconds: float


class AlarmRules:
    """Turns outputs on for matching new events; off after their time or on silence."""

    def __init__(
        self,
        rules: Iterable[AlarmRule],
        outputs: Mapping[str, Switch],
        on_change: Callable[[str, bool, str], None] | None = None,
    ) -> None:
        self.rules = list(rules)
        self.outputs = outputs
        self.on_change = on_change
        self._lock = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}

    def handle(self, event: Event) -> None:
        if event.kind == "silenced":
            self.silence(reason=event.source)
            return
        if event.is_restore:
            return
        for rule in self.rules:
            if event.kind in rule.when:
                self._sound(rule.output, rule.seconds, reason=f"{event.kind} {event.source}")

    def _sound(self, name: str, seconds: float, reason: str) -> None:
        output = self.outputs[name]
        with self._lock:
            old = self._timers.pop(name, None)
            if old is not None:
                old.cancel()
            timer = threading.Timer(seconds, self._expire, args=(name,))
            timer.daemon = True
            self._timers[name] = timer
            output.on()
            timer.start()
        log.warning("output %s on for %.0f s (%s)", name, seconds, reason)
        self._notify(name, True, reason)

    def _expire(self, name: str) -> None:
        with self._lock:
            if self._timers.pop(name, None) is None:
                return
            self.outputs[name].off()
        log.info("output %s off (time elapsed)", name)
        self._notify(name, False, "timeout")

    def silence(self, reason: str = "silence") -> list[str]:
        """Turn every sounding output off now; returns the names that were on."""
        silenced = []
        with self._lock:
            for name, timer in list(self._timers.items()):
                timer.cancel()
                self.outputs[name].off()
                silenced.append(name)
            self._timers.clear()
        for name in silenced:
            log.warning("output %s silenced (%s)", name, reason)
            self._notify(name, False, reason)
        return silenced

    def sounding(self) -> list[str]:
        with self._lock:
            return sorted(self._timers)

    def close(self) -> None:
        self.silence(reason="shutdown")

    def _notify(self, name: str, on: bool, reason: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(name, on, reason)
            except Exception:
                log.exception("output change callback failed")

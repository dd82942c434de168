"""Local alarm logic: alarms sound outputs (the siren) for a while, with no network involved.

Runs on whichever thread emits the event (a gpiozero callback, the serial reader...), before the
event is committed: the siren must not wait for the disk or the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from core.events import Event

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
    """Turns outputs on for matching new events; off after their time or on silence.

    One timer thread, started by the first alarm, turns outputs off when their time is up: an
    alarm only moves a deadline, so the thread that reports it (and the event behind it) never
    waits for a new thread to start.
    """

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
        self._changed = threading.Condition(self._lock)
        self._deadlines: dict[str, float] = {}  # sounding outputs: when each goes off
        self._thread: threading.Thread | None = None
        self._closed = False

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
            self._deadlines[name] = time.monotonic() + seconds
            output.on()
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="alarm-timer", daemon=True)
                self._thread.start()
            else:
                self._changed.notify()
        log.warning("output %s on for %.0f s (%s)", name, seconds, reason)
        self._notify(name, True, reason)

    def _run(self) -> None:
        """The timer thread: turn each output off once its deadline has passed."""
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    expired = [n for n, due in self._deadlines.items() if due <= now]
                    if expired:
                        break
                    self._changed.wait(min(self._deadlines.values(), default=now + 3600) - now)
                for name in expired:
                    del self._deadlines[name]
                    self.outputs[name].off()
            for name in expired:
                log.info("output %s off (time elapsed)", name)
                self._notify(name, False, "timeout")

    def silence(self, reason: str = "silence") -> list[str]:
        """Turn every sounding output off now; returns the names that were on."""
        with self._lock:
            silenced = list(self._deadlines)
            for name in silenced:
                self.outputs[name].off()
            self._deadlines.clear()
            self._changed.notify()
        for name in silenced:
            log.warning("output %s silenced (%s)", name, reason)
            self._notify(name, False, reason)
        return silenced

    def sounding(self) -> list[str]:
        with self._lock:
            return sorted(self._deadlines)

    def close(self) -> None:
        self.silence(reason="shutdown")
        with self._lock:
            self._closed = True
            self._changed.notify()

    def _notify(self, name: str, on: bool, reason: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(name, on, reason)
            except Exception:
                log.exception("output change callback failed")

"""Supervision: a sensor that stays silent past its window is reported lost, and found again.

Each watched sensor has a window (for a bus node ``missed * heartbeat_s``). Any frame from it
calls ``seen``; a timer thread calls ``check``, which reports one trouble event (qualifier E)
for each sensor silent longer than its window. The first frame after that reports one restore
(qualifier R) at once, from the thread that calls ``seen``. A sensor never heard since the
watch began counts from then: a node that is dead at start is reported one window later.

The clock is injectable (``clock=``, seconds, monotonic) so tests can move time by hand and call
``check`` themselves instead of starting the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.events import NEW, RESTORE, Event

log = logging.getLogger(__name__)

MIN_TICK_S = 0.05
MAX_TICK_S = 1.0


@dataclass
class Watched:
    """One supervised sensor and what the supervisor knows of it."""

    name: str
    window_s: float
    kind: str  # "supervision" (wired, Contact ID 147) or "rf_supervision" (381)
    zone: str
    data: Mapping[str, Any]
    last_seen: float
    heard: bool = False
    lost: bool = False
    losses: int = field(default=0)


class Supervisor:
    """Tracks when each sensor was last heard and reports the silent ones.

    ``emit`` must be quick and thread-safe (the hub's ``emit``). ``seen`` may be called from
    any thread (the bus reader threads); ``check`` runs on the supervisor's own timer thread.
    """

    def __init__(
        self,
        emit: Callable[[Event], object],
        *,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float | None = None,
    ) -> None:
        self.emit = emit
        self.clock = clock
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._watched: dict[str, Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------

    def watch(
        self,
        name: str,
        *,
        window_s: float,
        kind: str = "supervision",
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Supervise ``name`` from now on; silence longer than ``window_s`` reports ``kind``."""
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        with self._lock:
            self._watched[name] = Watched(
                name=name,
                window_s=window_s,
                kind=kind,
                zone=zone if zone is not None else name,
                data=dict(data or {}),
                last_seen=self.clock(),
            )

    @property
    def tick_s(self) -> float:
        """How often the timer thread checks: a fifth of the smallest window, 0.05 to 1 s."""
        if self._tick_s is not None:
            return self._tick_s
        with self._lock:
            windows = [w.window_s for w in self._watched.values()]
        smallest = min(windows, default=MAX_TICK_S * 5)
        return min(MAX_TICK_S, max(MIN_TICK_S, smallest / 5))

    def start(self) -> None:
        if self._thread is not None or not self._watched:
            return
        self._thread = threading.Thread(target=self._run, name="supervision", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- input (any thread) ---------------------------------------------------------------

    def seen(self, name: str) -> bool:
        """A frame from ``name`` arrived. Reports the restore if it was lost; False if unknown."""
        with self._lock:
            watched = self._watched.get(name)
            if watched is None:
                return False
            now = self.clock()
            silent_for = now - watched.last_seen
            watched.last_seen = now
            watched.heard = True
            found = watched.lost
            watched.lost = False
        if found:
            log.warning("%s is heard again", name)
            self._report(watched, RESTORE, silent_s=round(silent_for, 3))
        return True

    # -- the check (timer thread, or a test) ----------------------------------------------

    def check(self) -> list[str]:
        """Report every sensor newly silent past its window; returns their names."""
        now = self.clock()
        newly_lost: list[tuple[Watched, float]] = []
        with self._lock:
            for watched in self._watched.values():
                silent = now - watched.last_seen
                if not watched.lost and silent > watched.window_s:
                    watched.lost = True
                    watched.losses += 1
                    newly_lost.append((watched, silent))
        for watched, silent in newly_lost:
            log.warning(
                "%s lost: silent for %.1f s (window %.1f s)%s",
                watched.name,
                silent,
                watched.window_s,
                "" if watched.heard else ", never heard since start",
            )
            self._report(watched, NEW, silent_s=round(silent, 3), heard=watched.heard)
        return [w.name for w, _ in newly_lost]

    def _report(self, watched: Watched, qualifier: str, **extra: Any) -> None:
        try:
            self.emit(
                Event(
                    kind=watched.kind,
                    zone=watched.zone,
                    source=watched.name,
                    qualifier=qualifier,
                    data={**watched.data, "window_s": watched.window_s, **extra},
                )
            )
        except Exception:
            log.exception("could not report %s of %s", watched.kind, watched.name)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.check()
            except Exception:  # never let the supervision thread die
                log.exception("supervision check failed")

    # -- state ----------------------------------------------------------------------------

    def is_lost(self, name: str) -> bool:
        with self._lock:
            watched = self._watched.get(name)
            return bool(watched and watched.lost)

    def states(self) -> dict[str, dict[str, Any]]:
        """Per sensor: seconds since last heard (None if never), lost, how often lost."""
        now = self.clock()
        with self._lock:
            return {
                w.name: {
                    "last_seen_s": round(now - w.last_seen, 1) if w.heard else None,
                    "lost": w.lost,
                    "losses": w.losses,
                    "window_s": w.window_s,
                }
                for w in self._watched.values()
            }

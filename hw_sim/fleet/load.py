"""When each simulated hub does what: periodic work on its loop's timers, each hub at its own
random phase (thousands of hubs started together must not publish in lockstep), and the drill:
N panics on hubs drawn at random, at random moments within the last S seconds of the run."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from hw_sim.fleet.net_loop import NetLoop


def every(
    loop: NetLoop,
    first: float,
    period: float,
    work: Callable[[], None],
    *,
    alive: Callable[[], bool],
    until: float | None = None,
) -> None:
    """Run ``work`` at ``first`` and then every ``period`` seconds on ``loop`` (monotonic
    times), while ``alive()`` holds and before ``until``. Loop thread only. A turn that comes
    late does not make the next ones come early: the schedule keeps its phase."""

    def tick(due: float) -> None:
        if not alive() or (until is not None and due >= until):
            return
        work()
        nxt = due + period
        now = time.monotonic()
        if nxt < now:  # the loop fell behind: skip the turns already missed
            nxt += period * ((now - nxt) // period + 1)
        loop.call_at(nxt, lambda: tick(nxt))

    loop.call_at(first, lambda: tick(first))


def phase(rng: random.Random, now: float, period: float) -> float:
    """The first turn of a periodic job: somewhere within its first period."""
    return now + rng.uniform(0.0, period)


def drill_plan(
    rng: random.Random, count: int, start: float, within_s: float, targets: int
) -> list[tuple[float, int]]:
    """(when, which hub) for ``count`` panics within ``within_s`` of ``start``, on distinct
    hubs as long as there are enough of them, sorted by time."""
    if count <= 0 or targets <= 0:
        return []
    order: list[int] = []
    while len(order) < count:
        order.extend(rng.sample(range(targets), min(targets, count - len(order))))
    return sorted((start + rng.uniform(0.0, within_s), hub) for hub in order)

"""Waiting for a condition another thread makes true, with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable


class WaitTimeout(AssertionError):
    """The condition was not met in time (an AssertionError, so a test fails, not errors)."""


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "", *, step: float = 0.01
) -> None:
    """Return once ``predicate()`` is true; raise ``WaitTimeout`` after ``timeout`` seconds.

    ``step`` is how long it sleeps between two looks: a benchmark timing the wait passes a
    smaller one."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(step)

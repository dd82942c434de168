"""Waiting, with a bound, for a condition another thread makes true or for what it hands in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


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


class Collected(Generic[T]):
    """What other threads hand in (messages, publishes), in order, and waits on it.

    ``describe`` shows one item in the message of a wait that timed out."""

    def __init__(self, describe: Callable[[T], str], timeout: float = 10.0) -> None:
        self.describe = describe
        self.timeout = timeout
        self._cond = threading.Condition()
        self._items: list[T] = []

    def append(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self) -> list[T]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_until(
        self, predicate: Callable[[list[T]], bool], timeout: float | None = None
    ) -> list[T]:
        """Wait until ``predicate(items)`` is true; returns the items so far."""
        timeout = self.timeout if timeout is None else timeout
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(list(self._items)), timeout)
            got = list(self._items)
        if not ok:
            raise self._timed_out("condition not met", timeout, got)
        return got

    def at(self, index: int, timeout: float | None = None) -> T:
        """The item at ``index`` (0 is the first), once it is there.

        Looks at a length, not at a copy, at every arrival: benchmarks wait on this."""
        timeout = self.timeout if timeout is None else timeout
        with self._cond:
            if self._cond.wait_for(lambda: len(self._items) > index, timeout):
                return self._items[index]
            got = list(self._items)
        raise self._timed_out(f"expected {index + 1} item(s)", timeout, got)

    def _timed_out(self, what: str, timeout: float, got: list[T]) -> WaitTimeout:
        shown = "\n".join(f"  {self.describe(item)}" for item in got[-10:])
        return WaitTimeout(
            f"{what} within {timeout} s; {len(got)} received"
            + (f", the last ones:\n{shown}" if got else "")
        )

# Small compatibility layer so the node firmware runs unchanged on MicroPython (where `time`
# has ticks_ms/ticks_diff/sleep_ms) and on CPython (tests, the hub simulator).
#
# Clocks are objects with ticks_ms(), ticks_diff(a, b) and sleep_ms(ms) (and optionally
# sleep_us(us)). On a board the `time` module itself is such an object. Tick values wrap like
# MicroPython's (period 2**30 on CPython here): always compare them with ticks_diff, never with
# < or -.
#
# MicroPython-compatible code only: no typing, no dataclasses, no f-strings.

import time as _time

# MicroPython's time module has the ticks functions; CPython's does not.
_native = hasattr(_time, "ticks_ms")

TICKS_PERIOD = 1 << 30
_TICKS_MASK = TICKS_PERIOD - 1
_TICKS_HALF = TICKS_PERIOD >> 1


def ticks_diff_wrapping(end, start):
    """Signed difference end - start of two wrapping tick values, as MicroPython defines it."""
    return ((end - start + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF


class SystemClock:
    """The real clock: MicroPython's `time` functions, or CPython's monotonic clock."""

    def __init__(self):
        if _native:
            self._t0 = 0
        else:
            self._t0 = _time.monotonic()

    def ticks_ms(self):
        if _native:
            return _time.ticks_ms()
        return int((_time.monotonic() - self._t0) * 1000) & _TICKS_MASK

    def ticks_diff(self, end, start):
        if _native:
            return _time.ticks_diff(end, start)
        return ticks_diff_wrapping(end, start)

    def sleep_ms(self, ms):
        if ms <= 0:
            return
        if _native:
            _time.sleep_ms(ms)
        else:
            _time.sleep(ms / 1000)

    def sleep_us(self, us):
        if us <= 0:
            return
        if _native:
            _time.sleep_us(us)
        else:
            _time.sleep(us / 1000000)


class ManualClock:
    """A clock that moves only when told to (tests, simulations).

    sleep_ms/sleep_us advance it, so a node loop driven by it runs as fast as the host can go.
    Start it near the wrap point (start=TICKS_PERIOD - 1000) to test wrap-around handling.
    """

    def __init__(self, start=0):
        self._us = (start & _TICKS_MASK) * 1000

    def ticks_ms(self):
        return (self._us // 1000) & _TICKS_MASK

    def ticks_diff(self, end, start):
        return ticks_diff_wrapping(end, start)

    def advance(self, ms):
        self._us += int(ms * 1000)

    def sleep_ms(self, ms):
        if ms > 0:
            self._us += int(ms) * 1000

    def sleep_us(self, us):
        if us > 0:
            self._us += int(us)


def make_rand():
    """A function rand(n) -> int in [0, n), from the board's random source where it has one."""
    try:
        import random

        getrandbits = random.getrandbits
    except (ImportError, AttributeError):
        getrandbits = None
    if getrandbits is None:
        state = [_seed_from_time() or 1]

        def rand_lcg(n):
            # Numerical Recipes LCG: weak but enough to spread re-sends apart.
            state[0] = (state[0] * 1664525 + 1013904223) & 0xFFFFFFFF
            return (state[0] >> 8) % n if n > 0 else 0

        return rand_lcg

    def rand(n):
        return getrandbits(24) % n if n > 0 else 0

    return rand


def random_byte():
    """One random byte for the boot value: os.urandom where present (rp2, esp32, CPython)."""
    try:
        import os

        return os.urandom(1)[0]
    except (ImportError, AttributeError, OSError, NotImplementedError):
        pass
    try:
        import random

        return random.getrandbits(8)
    except (ImportError, AttributeError):
        return _seed_from_time() & 0xFF


def _seed_from_time():
    if hasattr(_time, "ticks_us"):
        return _time.ticks_us()
    return int(_time.monotonic() * 1000000) & 0xFFFFFFFF

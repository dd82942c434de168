"""Whether the system clock is synchronised (most Pis have no RTC: wrong until NTP syncs)."""

from __future__ import annotations

import ctypes
import ctypes.util
import time

_TIME_ERROR = 5  # adjtimex() state: clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux): the fields we read, then room for the rest.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("rest", ctypes.c_long * 20),
    ]


class ClockStatus:
    """Asks the kernel (adjtimex) at most once a minute; False where it cannot tell."""

    def __init__(self, refresh_s: float = 60.0) -> None:
        self.refresh_s = refresh_s
        self._checked_at = -refresh_s
        self._synced = False
        name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(name, use_errno=True) if name else None

    def synced(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_s:
            self._checked_at = now
            self._synced = self._ask_kernel()
        return self._synced

    def _ask_kernel(self) -> bool:
        if self._libc is None or not hasattr(self._libc, "adjtimex"):
            return False
        tx = _Timex()  # modes=0: read only
        state = int(self._libc.adjtimex(ctypes.byref(tx)))
        return 0 <= state != _TIME_ERROR

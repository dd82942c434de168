"""Armed hours of a zone: local-time ranges such as ``"22:00-06:00"`` (crossing midnight)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from datetime import time as dtime

from settings.cameras import parse_range


class Schedule:
    """When a zone is armed. No ranges: always armed.

    A range includes its start and excludes its end: ``"22:00-06:00"`` is armed from 22:00:00
    up to 05:59:59; ``"00:00-24:00"`` is the whole day.
    """

    def __init__(self, ranges: Iterable[str] = ()) -> None:
        self.texts = tuple(ranges)
        self.ranges: list[tuple[dtime, dtime | None]] = [parse_range(t) for t in self.texts]

    @property
    def always(self) -> bool:
        return not self.ranges

    def armed(self, now: datetime) -> bool:
        """Whether ``now`` (local time) falls in one of the ranges."""
        if not self.ranges:
            return True
        t = now.time().replace(tzinfo=None)
        for start, end in self.ranges:
            if end is None:
                if t >= start:
                    return True
            elif start < end:
                if start <= t < end:
                    return True
            elif t >= start or t < end:  # crosses midnight
                return True
        return False

    def __repr__(self) -> str:
        return f"Schedule({list(self.texts)!r})"

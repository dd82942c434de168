"""One detector shared by every camera.

A TFLite/LiteRT interpreter is not safe to call from two threads at once, and a Pi has no
cores to spare for one interpreter per camera. ``SharedDetector`` wraps the hub's detector
(``sensors.detection.load_detector``) and lets one camera thread at a time run it; the others
wait their turn. The pipeline only needs ``DetectorLike``: anything with a ``name`` and a
``detect(frame)`` that returns objects with ``label``, ``score`` and ``box`` (pixels of the
frame it was given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class DetectionLike(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def box(self) -> tuple[float, float, float, float]: ...


class DetectorLike(Protocol):
    @property
    def name(self) -> str: ...

    def detect(self, frame: np.ndarray) -> Sequence[DetectionLike]: ...


class SharedDetector:
    """A detector several camera threads call; calls run one at a time (thread-safe)."""

    def __init__(self, detector: DetectorLike) -> None:
        self.detector = detector
        self._lock = threading.Lock()
        self.calls = 0
        self.busy_s = 0.0  # time spent inside the detector
        self.wait_s = 0.0  # time camera threads waited for their turn

    @property
    def name(self) -> str:
        return self.detector.name

    def detect(self, frame: np.ndarray) -> Sequence[DetectionLike]:
        asked = time.perf_counter()
        with self._lock:
            started = time.perf_counter()
            try:
                return self.detector.detect(frame)
            finally:
                self.calls += 1
                self.busy_s += time.perf_counter() - started
                self.wait_s += started - asked

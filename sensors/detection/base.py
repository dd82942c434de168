"""What every detector returns, and what every detector is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.errors import TuquanError

if TYPE_CHECKING:
    import numpy as np


class FrameError(TuquanError, ValueError):
    """A frame the detector cannot use (wrong type, shape or size)."""


@dataclass(frozen=True)
class Detection:
    """One object found in a frame."""

    label: str  # "person", ...
    score: float  # 0..1
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in pixels of the frame


class Detector(Protocol):
    """Finds objects in frames. One thread at a time may call ``detect``."""

    name: str

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """``frame``: HxWx3 uint8 RGB, any size. Boxes are in pixels of that frame."""
        ...

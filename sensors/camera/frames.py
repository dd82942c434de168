"""What a camera source hands the pipeline: a ``Frame``, through the ``FrameSource`` protocol,
or a ``SourceError`` when the device or stream cannot be opened or is lost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import TuquanError

if TYPE_CHECKING:
    import numpy as np


class SourceError(TuquanError):
    """A camera or stream cannot be opened, or was lost."""


class EndOfStream(SourceError):
    """A file or folder source without ``loop`` has no more frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3 uint8, RGB
    ts: float  # seconds on the pipeline's clock (time.monotonic unless one is injected)
    gray: np.ndarray | None = None  # optional small grayscale copy from the camera

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.image.shape[1]), int(self.image.shape[0])


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline needs from a camera (see ``sensors.camera.sources``)."""

    live: bool
    description: str  # for logs and events; never holds a password

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def opencv() -> Any:
    """The ``cv2`` module, imported on first use (a hub without cameras never loads it)."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a hub installed without camera support
        raise SourceError(
            "OpenCV is not installed (pip install opencv-python-headless): "
            "cameras other than Pi cameras need it"
        ) from exc
    return cv2

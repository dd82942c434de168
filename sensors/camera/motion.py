"""Motion detection on a small grayscale frame: what decides whether the detector runs.

As in Frigate: the frame is scaled down (160 px wide by default) and blurred; it is compared
with a running-average background; pixels that differ by more than a threshold are dilated into
areas, and areas larger than a minimum are motion. Masked pixels never count. A change over
most of the frame at once (lightning, the infrared switching on) resets the background and is
not motion. The boxes returned are in pixels of the full frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensors.camera.geometry import Box, mask_raster
from settings.cameras import MotionConfig, Polygon


def small_gray(rgb: np.ndarray, width: int) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8) as a grayscale uint8 copy ``width`` pixels wide."""
    h, w = rgb.shape[:2]
    height = max(1, round(h * width / w))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def resize_gray(gray: np.ndarray, width: int) -> np.ndarray:
    """A grayscale frame (e.g. the Y plane of a camera's low-resolution stream) at ``width``."""
    h, w = gray.shape[:2]
    if w == width:
        return gray
    height = max(1, round(h * width / w))
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


@dataclass
class MotionResult:
    boxes: list[Box]  # in full-frame pixels
    changed: float  # share of the (unmasked) frame that changed
    reset: bool = False  # the background was taken anew (first frame, lightning, new size)


class MotionDetector:
    """One camera's motion detector. Not thread-safe: the camera's thread owns it."""

    def __init__(self, settings: MotionConfig, masks: tuple[Polygon, ...] = ()) -> None:
        self.settings = settings
        self.masks = masks
        self._background: np.ndarray | None = None
        self._mask: np.ndarray | None = None  # True where motion is ignored
        self._kernel = np.ones((3, 3), np.uint8)

    def reset(self) -> None:
        self._background = None

    def detect(self, gray: np.ndarray, frame_size: tuple[int, int]) -> MotionResult:
        """Motion in ``gray`` (the small grayscale frame) of a frame of ``frame_size`` (w, h)."""
        s = self.settings
        gray = resize_gray(gray, s.width)
        blurred = cv2.GaussianBlur(gray, (5, 5), 0)
        h, w = blurred.shape
        if self._background is None or self._background.shape != (h, w):
            self._background = blurred.astype(np.float32)
            self._mask = mask_raster(self.masks, w, h)
            return MotionResult([], 0.0, reset=True)

        diff = cv2.absdiff(blurred, cv2.convertScaleAbs(self._background))
        if self._mask is not None:
            diff[self._mask] = 0
        changed_px = diff > s.threshold
        visible = w * h - (int(self._mask.sum()) if self._mask is not None else 0)
        changed = float(changed_px.sum()) / max(1, visible)
        if changed > s.lightning:
            self._background = blurred.astype(np.float32)
            return MotionResult([], changed, reset=True)

        cv2.accumulateWeighted(blurred, self._background, s.alpha)
        if not changed_px.any():
            return MotionResult([], changed)
        binary = changed_px.astype(np.uint8) * 255
        grown = cv2.dilate(binary, self._kernel, iterations=2)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        fw, fh = frame_size
        sx, sy = fw / w, fh / h
        boxes: list[Box] = []
        for c in contours:
            if cv2.contourArea(c) < s.contour_area:
                continue
            x, y, bw, bh = cv2.boundingRect(c)
            boxes.append((x * sx, y * sy, (x + bw) * sx, (y + bh) * sy))
        return MotionResult(boxes, changed)

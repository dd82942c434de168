"""Camera tamper: a camera covered, sprayed or defocused, or turned away from its view.

The detector learns a reference of the view during its first ``learn_s`` seconds: the
picture's sharpness (variance of the Laplacian) and its edge map (blurred gradient magnitude,
so a few pixels of wind shake do not matter). Every ``check_s`` seconds it compares the current
picture with it:

* covered: the picture is almost uniform (standard deviation under ``covered_std``): a hand, a
  bag, tape, paint over the lens, or a black frame;
* defocused: the sharpness (variance of the Laplacian relative to the picture's variance, so
  that dimming does not count) fell under ``blur_ratio`` of the reference's (lens sprayed,
  smeared or turned out of focus);
* turned away: the picture is sharp but its edges no longer match the reference's: of the grid
  cells that hold texture in the reference, fewer than ``scene_match`` still correlate
  (normalised cross-correlation of the edge maps, which ignores brightness and contrast).
  A truck or a person close to the lens hides part of the grid; turning the camera moves all of
  it.

A condition must hold for ``persist_s`` before it is reported (once: ``TamperChange`` with
``active=True``) and must be gone for ``persist_s`` before the restore. The reference follows
slow changes (day and night, seasons) with a time constant of ``adapt_s`` seconds, only while
the view is normal, so a tampered view is never learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sensors.camera.motion import resize_gray
from settings.cameras import TamperConfig

CELL_MATCH_NCC = 0.7  # a cell whose edge map correlates at least this well still matches
CELL_TEXTURE_STD = 2.0  # a reference cell with less edge variation than this is featureless


@dataclass(frozen=True)
class TamperChange:
    """A tamper condition reported (``active``) or restored."""

    active: bool
    reason: str  # covered | defocused | turned_away (for a restore: the reason it had)
    metrics: dict[str, Any]


@dataclass(frozen=True)
class ViewMetrics:
    mean: float
    std: float
    sharpness: float
    sharpness_ratio: float | None
    scene_match: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 1),
            "std": round(self.std, 1),
            "sharpness_ratio": None
            if self.sharpness_ratio is None
            else round(self.sharpness_ratio, 3),
            "scene_match": None if self.scene_match is None else round(self.scene_match, 3),
        }


def edge_map(gray: np.ndarray) -> np.ndarray:
    """Blurred gradient magnitude (float32) of a grayscale picture."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (7, 7), 0)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian over the picture's variance: high for a focused picture, and
    the same whether the scene is lit brightly or dimly (both scale with contrast squared)."""
    variance = float(gray.var())
    if variance < 1e-6:
        return 0.0
    return float(cv2.Laplacian(gray, cv2.CV_32F).var()) / variance


class TamperDetector:
    """One camera's tamper watch. ``update`` is called with each frame's grayscale copy and the
    frame's time (seconds); it does its work every ``check_s``. Not thread-safe."""

    def __init__(self, settings: TamperConfig) -> None:
        self.settings = settings
        self.active = False
        self.reason: str | None = None
        self.last: ViewMetrics | None = None
        self._learn_start: float | None = None
        self._learn_edges: list[np.ndarray] = []
        self._learn_sharp: list[float] = []
        self._ref_edges: np.ndarray | None = None
        self._ref_sharp = 0.0
        self._textured: np.ndarray | None = None  # cells worth comparing
        self._last_check: float | None = None
        self._suspect_since: float | None = None
        self._suspect_reason: str | None = None
        self._clear_since: float | None = None

    @property
    def learned(self) -> bool:
        return self._ref_edges is not None

    def reset(self) -> None:
        """Forget the reference and learn the view again (the camera was re-aimed on purpose,
        or its picture size changed). A reported condition stays until it clears."""
        self._learn_start, self._learn_edges, self._learn_sharp = None, [], []
        self._ref_edges, self._ref_sharp, self._textured = None, 0.0, None

    def update(self, gray: np.ndarray, ts: float) -> TamperChange | None:
        s = self.settings
        if not s.enabled:
            return None
        if self._last_check is not None and ts - self._last_check < s.check_s:
            return None
        self._last_check = ts
        gray = resize_gray(gray, s.width)
        if self._ref_edges is None:
            self._learn(gray, ts)
            # Covered from the start: still worth reporting, the reference can wait.
            return self._judge(self._covered_only(gray), ts)
        metrics = self._measure(gray)
        self.last = metrics
        reason = self._classify(metrics)
        change = self._judge((reason, metrics), ts)
        if reason is None and not self.active and self._suspect_since is None:
            self._adapt(gray)
        return change

    # -- reference --------------------------------------------------------------------------

    def _learn(self, gray: np.ndarray, ts: float) -> None:
        s = self.settings
        if float(gray.std()) < s.covered_std:
            # Never learn a covered view: start again once it is uncovered.
            self._learn_start, self._learn_edges, self._learn_sharp = None, [], []
            return
        if self._learn_start is None:
            self._learn_start = ts
        self._learn_edges.append(edge_map(gray))
        self._learn_sharp.append(sharpness(gray))
        if ts - self._learn_start >= s.learn_s and len(self._learn_edges) >= 2:
            self._ref_edges = np.mean(self._learn_edges, axis=0).astype(np.float32)
            self._ref_sharp = float(np.median(self._learn_sharp))
            self._learn_edges, self._learn_sharp = [], []
            self._textured = self._cell_std(self._ref_edges) >= CELL_TEXTURE_STD

    def _adapt(self, gray: np.ndarray) -> None:
        assert self._ref_edges is not None
        a = min(1.0, self.settings.check_s / self.settings.adapt_s)
        edges = edge_map(gray)
        if edges.shape != self._ref_edges.shape:
            self.reset()
            return
        cv2.accumulateWeighted(edges, self._ref_edges, a)
        self._ref_sharp = (1.0 - a) * self._ref_sharp + a * sharpness(gray)
        self._textured = self._cell_std(self._ref_edges) >= CELL_TEXTURE_STD

    # -- measuring --------------------------------------------------------------------------

    def _cells(self, img: np.ndarray) -> list[np.ndarray]:
        g = self.settings.grid
        h, w = img.shape
        ys = np.linspace(0, h, g + 1).astype(int)
        xs = np.linspace(0, w, g + 1).astype(int)
        return [img[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i in range(g) for j in range(g)]

    def _cell_std(self, img: np.ndarray) -> np.ndarray:
        return np.array([float(c.std()) for c in self._cells(img)])

    def _scene_match(self, edges: np.ndarray) -> float | None:
        assert self._ref_edges is not None and self._textured is not None
        if edges.shape != self._ref_edges.shape or not self._textured.any():
            return None
        matched = 0
        for cur, ref, textured in zip(
            self._cells(edges), self._cells(self._ref_edges), self._textured, strict=True
        ):
            if not textured:
                continue
            a = cur - cur.mean()
            b = ref - ref.mean()
            denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
            if denom > 0 and float((a * b).sum()) / denom >= CELL_MATCH_NCC:
                matched += 1
        return matched / int(self._textured.sum())

    def _measure(self, gray: np.ndarray) -> ViewMetrics:
        sharp = sharpness(gray)
        return ViewMetrics(
            mean=float(gray.mean()),
            std=float(gray.std()),
            sharpness=sharp,
            sharpness_ratio=sharp / self._ref_sharp if self._ref_sharp > 1e-6 else None,
            scene_match=self._scene_match(edge_map(gray)),
        )

    def _covered_only(self, gray: np.ndarray) -> tuple[str | None, ViewMetrics]:
        m = ViewMetrics(float(gray.mean()), float(gray.std()), sharpness(gray), None, None)
        self.last = m
        return ("covered" if m.std < self.settings.covered_std else None), m

    def _classify(self, m: ViewMetrics) -> str | None:
        s = self.settings
        if m.std < s.covered_std:
            return "covered"
        if m.sharpness_ratio is not None and m.sharpness_ratio < s.blur_ratio:
            return "defocused"
        if m.scene_match is not None and m.scene_match < s.scene_match:
            return "turned_away"
        return None

    # -- reporting --------------------------------------------------------------------------

    def _judge(self, found: tuple[str | None, ViewMetrics], ts: float) -> TamperChange | None:
        reason, metrics = found
        persist = self.settings.persist_s
        if reason is not None:
            self._clear_since = None
            if self._suspect_since is None:
                self._suspect_since = ts
            self._suspect_reason = reason
            if not self.active and ts - self._suspect_since >= persist:
                self.active, self.reason = True, reason
                return TamperChange(True, reason, metrics.as_dict())
            return None
        self._suspect_since = None
        if self.active:
            if self._clear_since is None:
                self._clear_since = ts
            if ts - self._clear_since >= persist:
                was = self.reason or "unknown"
                self.active, self.reason, self._clear_since = False, None, None
                return TamperChange(False, was, metrics.as_dict())
        return None

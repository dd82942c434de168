"""All of a hub's cameras: one pipeline and thread each, one detector shared between them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sensors.camera.incidents import SnapshotSink
from sensors.camera.inference import DetectorLike, SharedDetector
from sensors.camera.pipeline import CameraPipeline, Emit
from sensors.camera.sources import FrameSource
from settings.cameras import CameraConfig

log = logging.getLogger(__name__)


class Cameras:
    """Builds a ``CameraPipeline`` per camera around one ``SharedDetector``.

    ``sources`` maps camera names to sources that replace the ones their settings describe
    (the simulator's virtual cameras). ``pipeline_options`` go to every pipeline (``clock``,
    ``now``, ``clock_synced``...).
    """

    def __init__(
        self,
        cameras: Iterable[CameraConfig],
        *,
        emit: Emit,
        detector: DetectorLike | None = None,
        snapshot: SnapshotSink | None = None,
        sources: Mapping[str, FrameSource] | None = None,
        **pipeline_options: Any,
    ) -> None:
        settings = list(cameras)
        names = [c.name for c in settings]
        if len(set(names)) != len(names):
            raise ValueError("camera names must be unique")
        self.detector = SharedDetector(detector) if detector is not None else None
        sources = dict(sources or {})
        self.pipelines: dict[str, CameraPipeline] = {
            c.name: CameraPipeline(
                c,
                emit=emit,
                detector=self.detector,
                snapshot=snapshot,
                source=sources.get(c.name),
                **pipeline_options,
            )
            for c in settings
        }
        if self.detector is None and self.pipelines:
            log.warning("cameras run without a detector: tamper and offline reporting only")

    def start(self) -> None:
        for p in self.pipelines.values():
            p.start()

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.pipelines.values():
            p.stop(timeout)

    def __getitem__(self, name: str) -> CameraPipeline:
        return self.pipelines[name]

    def health(self) -> dict[str, Any]:
        """``{"cameras": {name: pipeline health}, "detector": {...} or None}``"""
        out: dict[str, Any] = {
            "cameras": {name: p.health() for name, p in self.pipelines.items()},
            "detector": None,
        }
        if self.detector is not None:
            out["detector"] = {
                "name": self.detector.name,
                "calls": self.detector.calls,
                "busy_s": round(self.detector.busy_s, 3),
                "wait_s": round(self.detector.wait_s, 3),
            }
        return out

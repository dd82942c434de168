"""All of a hub's cameras: one pipeline and thread each, one detector per model shared between
the cameras that run it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sensors.camera.incidents import SnapshotSink
from sensors.camera.inference import DetectorLike, SharedDetector
from sensors.camera.pipeline import CameraPipeline, Emit
from sensors.camera.sources import FrameSource
from settings.cameras import CameraConfig

log = logging.getLogger(__name__)


Loader = Callable[[str], DetectorLike]


def sibling_loader(detector: DetectorLike) -> Loader:
    """Loads other models of the manifest as ``detector`` was loaded (its threads and models
    directory, when it says them)."""
    threads = getattr(detector, "threads", 2)
    models_dir = getattr(detector, "models_dir", None)

    def load(name: str) -> DetectorLike:
        from sensors.detection import load_detector

        return load_detector(name, threads=threads, models_dir=models_dir)

    return load


class Cameras:
    """Builds a ``CameraPipeline`` per camera around a ``SharedDetector`` per model.

    ``detector`` is the hub's detector: cameras with no ``model`` or ``role`` of their own run
    it. A camera whose settings name another model gets that model's detector, loaded once by
    ``load`` (default: as ``detector`` was loaded) and shared with every camera of the model.

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
        load: Loader | None = None,
        snapshot: SnapshotSink | None = None,
        sources: Mapping[str, FrameSource] | None = None,
        **pipeline_options: Any,
    ) -> None:
        settings = list(cameras)
        names = [c.name for c in settings]
        if len(set(names)) != len(names):
            raise ValueError("camera names must be unique")
        self.detector = SharedDetector(detector) if detector is not None else None
        self.detectors: dict[str, SharedDetector] = {}
        if self.detector is not None:
            self.detectors[self.detector.name] = self.detector
            load = load if load is not None else sibling_loader(self.detector.detector)
            for c in settings:
                model = c.model_for(self.detector.name)
                if model not in self.detectors:
                    self.detectors[model] = SharedDetector(load(model))
                    log.info("camera %s: detector %s loaded", c.name, model)
        sources = dict(sources or {})
        self.pipelines: dict[str, CameraPipeline] = {
            c.name: CameraPipeline(
                c,
                emit=emit,
                detector=self.detectors[c.model_for(self.detector.name)]
                if self.detector is not None
                else None,
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
        """``{"cameras": {name: pipeline health}, "detector": {...} or None, "detectors":
        [{...} per model]}``; ``detector`` is the hub's own (the cameras without a model of
        their own)."""
        out: dict[str, Any] = {
            "cameras": {name: p.health() for name, p in self.pipelines.items()},
            "detector": None,
            "detectors": [_usage(d) for d in self.detectors.values()],
        }
        if self.detector is not None:
            out["detector"] = _usage(self.detector)
        return out


def _usage(detector: SharedDetector) -> dict[str, Any]:
    return {
        "name": detector.name,
        "calls": detector.calls,
        "busy_s": round(detector.busy_s, 3),
        "wait_s": round(detector.wait_s, 3),
    }

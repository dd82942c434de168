"""Object detection on the hub: a model from ``models/``, run on the CPU by LiteRT (a .tflite)
or by OpenCV's DNN module (a TensorFlow frozen graph: ``runtime = "opencv-dnn"``).

::

    from sensors.detection import load_detector

    detector = load_detector()                  # "pose-detection": people, 2 threads
    for d in detector.detect(frame):            # frame: HxWx3 uint8 RGB, any size
        print(d.label, d.score, d.box)          # box: x_min, y_min, x_max, y_max, frame pixels

``load_detector(name, threads=2, models_dir=None, min_score=None)`` reads the model named in the
manifest (``models/manifest.toml``), checks its sha256, and builds the decoder the manifest
names. Anything wrong with the model (unknown name, file missing, wrong hash, a shape the
decoder does not expect) raises ``ModelError``, whose message says what to run. A frame the
detector cannot use raises ``FrameError``. Both are ``TuquanError``.

A detector is not thread-safe; cameras share one through
``sensors.camera.inference.SharedDetector``. Importing this package costs nothing: numpy, OpenCV
and the runtime are imported by ``load_detector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.manifest import ModelError
from sensors.detection.base import Detection, Detector, FrameError

if TYPE_CHECKING:
    import numpy as np

    from models.manifest import ModelSpec
    from sensors.detection.preprocess import Preprocessor
    from sensors.detection.runtime import Runtime

__all__ = ["Detection", "Detector", "FrameError", "ModelError", "TFLiteDetector", "load_detector"]

DEFAULT_MODEL = "pose-detection"


class TFLiteDetector:
    """A model from the manifest: preprocessing, the runtime (LiteRT or OpenCV DNN), and the
    model's decoder. ``threads`` and ``models_dir`` are what it was loaded with, so the cameras
    can load another model of the same manifest alike (``sensors.camera.cameras``)."""

    def __init__(
        self,
        spec: ModelSpec,
        runtime: Runtime,
        preprocess: Preprocessor,
        decode: Any,
        min_score: float,
        *,
        threads: int = 2,
        models_dir: Path | None = None,
    ) -> None:
        self.name = spec.name
        self.threads = threads
        self.models_dir = models_dir
        self.spec = spec
        self.runtime = runtime
        self.preprocess = preprocess
        self.decode = decode
        self.min_score = min_score

    def detect(self, frame: np.ndarray) -> list[Detection]:
        tensor, placement = self.preprocess(frame)
        outputs = self.runtime.run(tensor)
        found: list[Detection] = self.decode(outputs, placement, self.min_score)
        return found

    def __repr__(self) -> str:
        return (
            f"TFLiteDetector({self.name!r}, runtime={self.runtime.name}, "
            f"min_score={self.min_score})"
        )


def load_detector(
    name: str = DEFAULT_MODEL,
    *,
    threads: int = 2,
    models_dir: Path | None = None,
    min_score: float | None = None,
) -> TFLiteDetector:
    """The detector for model ``name``, its file checked against the manifest's sha256.

    ``models_dir``: where model files (and ``local.toml``) are; default ``$TUQUAN_MODELS_DIR``
    or the ``models/`` package directory. ``min_score``: drop detections below it (default: the
    manifest's ``min_score`` for the model).
    """
    from models.manifest import get_spec, read_verified, read_verified_graph
    from sensors.detection.preprocess import Preprocessor

    spec = get_spec(name, models_dir)
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ModelError(f"model {name}: min_score must be 0..1, got {min_score}")
    content = read_verified(spec, models_dir)
    label = f"model {name} ({spec.file})"
    runtime: Runtime
    if spec.runtime == "opencv-dnn":
        from sensors.detection.dnn import OpenCvDnnRuntime

        graph = read_verified_graph(spec, models_dir)
        assert graph is not None  # the manifest requires graph_file for opencv-dnn
        runtime = OpenCvDnnRuntime(
            content, graph, input_size=spec.input_size, threads=threads, label=label
        )
    else:
        from sensors.detection.runtime import open_runtime

        runtime = open_runtime(content, threads=threads, label=label)
    info = runtime.input
    want = (1, spec.input_size[1], spec.input_size[0], 3)
    if info.shape != want:
        raise ModelError(
            f"model {name}: its input is {info.shape}, the manifest says input_size "
            f"{list(spec.input_size)} (expected {want}); fix input_size"
        )
    preprocess = Preprocessor(
        spec.input_size[0],
        spec.input_size[1],
        resize=spec.resize,
        input_range=spec.input_range,
        pad_value=spec.pad_value,
        dtype=info.dtype,
        scale=info.scale,
        zero_point=info.zero_point,
    )
    decode = _decoder(spec, runtime)
    return TFLiteDetector(
        spec,
        runtime,
        preprocess,
        decode,
        spec.min_score if min_score is None else min_score,
        threads=threads,
        models_dir=models_dir,
    )


def _decoder(spec: ModelSpec, runtime: Runtime) -> Any:
    if spec.decoder == "blazepose":
        from sensors.detection.blazepose import BlazePoseDecoder

        return BlazePoseDecoder(
            runtime.outputs,
            input_size=spec.input_size,
            nms_iou=spec.nms_iou,
            max_detections=spec.max_detections,
            label=spec.labels[0],
            model=spec.name,
        )
    if spec.decoder == "detection-output":
        from sensors.detection.detection_output import DetectionOutputDecoder

        return DetectionOutputDecoder(
            runtime.outputs, spec.labels, max_detections=spec.max_detections, model=spec.name
        )
    if spec.decoder == "ssd":
        from sensors.detection.ssd import SsdDecoder

        return SsdDecoder(
            runtime.outputs,
            spec.labels,
            roles=spec.outputs,
            max_detections=spec.max_detections,
            model=spec.name,
        )
    from sensors.detection.yolo import YoloV8Decoder

    return YoloV8Decoder(
        runtime.outputs,
        spec.labels,
        input_size=spec.input_size,
        box_units=spec.box_units,
        nms_iou=spec.nms_iou,
        max_detections=spec.max_detections,
        model=spec.name,
    )

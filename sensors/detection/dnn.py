"""OpenCV's DNN module as a ``Runtime``: TensorFlow frozen graphs (SSD MobileNet v2 COCO).

The model and its text graph are handed to OpenCV as the bytes whose sha256 was checked, so
nothing can swap a file between check and load. The ``Preprocessor`` makes the same NHWC
tensor as for LiteRT; it is laid out NCHW here, as OpenCV's ``blobFromImage`` would. OpenCV's
thread count is process-wide (``cv2.setNumThreads``), so ``threads`` sets it for the whole hub:
on a Pi the hub's threads are the cores. A ``Runtime`` is not thread-safe (one ``run`` at a
time, ``sensors.camera.inference.SharedDetector``).
"""

from __future__ import annotations

import numpy as np

from models.manifest import ModelError
from sensors.detection.runtime import TensorInfo


class OpenCvDnnRuntime:
    """A TensorFlow frozen graph and its text graph, run by ``cv2.dnn``."""

    name = "opencv-dnn"

    def __init__(
        self,
        content: bytes,
        graph: bytes,
        *,
        input_size: tuple[int, int],
        threads: int = 2,
        label: str = "model",
    ) -> None:
        import cv2

        if threads < 1:
            raise ModelError(f"{label}: threads must be at least 1, got {threads}")
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise ModelError(
                f"{label}: OpenCV {cv2.__version__} has no TensorFlow importer (OpenCV 5 "
                f"removed it): pip install 'opencv-python-headless>=4.8,<5'"
            )
        try:
            self.net = cv2.dnn.readNetFromTensorflow(
                np.frombuffer(content, np.uint8), np.frombuffer(graph, np.uint8)
            )
        except cv2.error as exc:
            raise ModelError(f"{label}: OpenCV cannot load it: {exc}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        cv2.setNumThreads(threads)
        self.threads = threads
        width, height = input_size
        self.input = TensorInfo("input", 0, (1, height, width, 3), np.float32)
        names = tuple(self.net.getUnconnectedOutLayersNames())
        # The shapes are known once a frame has run; DetectionOutput gives [1, 1, N, 7].
        self.outputs = tuple(
            TensorInfo(n, i, (1, 1, -1, 7), np.float32) for i, n in enumerate(names)
        )
        self._names = list(names)

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.net.setInput(np.ascontiguousarray(tensor.transpose(0, 3, 1, 2)))
        out = self.net.forward(self._names)
        return [np.asarray(o, np.float32) for o in out]

    def invoke(self) -> None:
        self.net.forward(self._names)

"""The ``DetectionOutput`` layout of Caffe and TensorFlow SSD graphs as OpenCV runs them: one
[1, 1, N, 7] output, a row per detection, ``(image, class, score, x_min, y_min, x_max, y_max)``,
boxes normalized to the input. Class 0 is the background, so class ``c`` is label ``c - 1`` of
the manifest's labels (``coco90.txt``: class 1 = person). Rows are already past NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.manifest import ModelError
from sensors.detection.base import Detection
from sensors.detection.preprocess import Placement
from sensors.detection.runtime import TensorInfo


class DetectionOutputDecoder:
    def __init__(
        self,
        outputs: Sequence[TensorInfo],
        labels: Sequence[str],
        *,
        max_detections: int = 100,
        model: str = "detection-output",
    ) -> None:
        if len(outputs) != 1:
            raise ModelError(
                f"model {model}: the detection-output decoder needs one output "
                f"([1, 1, N, 7]), the model has {len(outputs)}"
            )
        self.labels = tuple(labels)
        self.max_detections = max_detections
        self.model = model

    def __call__(
        self, outputs: Sequence[np.ndarray], placement: Placement, min_score: float
    ) -> list[Detection]:
        out = outputs[0]
        if out.ndim != 4 or out.shape[-1] != 7:
            raise ModelError(
                f"model {self.model}: expected a [1, 1, N, 7] output, got {list(out.shape)}"
            )
        rows = out.reshape(-1, 7)
        rows = rows[rows[:, 2] >= min_score]
        rows = rows[np.argsort(-rows[:, 2], kind="stable")][: self.max_detections]
        found = []
        for _, cls, score, x0, y0, x1, y1 in rows:
            index = int(round(float(cls))) - 1
            if not 0 <= index < len(self.labels) or self.labels[index] == "???":
                continue
            xs = placement.to_frame_x(np.clip(np.array([x0, x1]), 0.0, 1.0))
            ys = placement.to_frame_y(np.clip(np.array([y0, y1]), 0.0, 1.0))
            box = (
                min(max(float(xs[0]), 0.0), float(placement.frame_w)),
                min(max(float(ys[0]), 0.0), float(placement.frame_h)),
                min(max(float(xs[1]), 0.0), float(placement.frame_w)),
                min(max(float(ys[1]), 0.0), float(placement.frame_h)),
            )
            if box[2] > box[0] and box[3] > box[1]:
                found.append(Detection(self.labels[index], round(float(score), 4), box))
        return found

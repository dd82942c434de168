"""SSD-style models with TFLite's detection post-processing built in (SSD MobileNet,
EfficientDet-Lite): four outputs, boxes (1 x N x 4: y_min, x_min, y_max, x_max, normalized to
the input), classes (1 x N, class index into the labels), scores (1 x N, 0..1) and count (1).

Which output is which: the manifest's ``outputs`` (the roles in the model's output order) if
it says; else the order of TFLite's ``TFLite_Detection_PostProcess`` op (boxes, classes, scores,
count), checked by shape, and if the tensor taken for classes holds fractions while the one
taken for scores holds whole numbers, the two are swapped (some exports list them the other way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.manifest import SSD_OUTPUTS, ModelError
from sensors.detection.base import Detection
from sensors.detection.preprocess import Placement
from sensors.detection.runtime import TensorInfo


class SsdDecoder:
    def __init__(
        self,
        outputs: Sequence[TensorInfo],
        labels: Sequence[str],
        *,
        roles: Sequence[str] | None = None,
        max_detections: int = 100,
        model: str = "ssd",
    ) -> None:
        if len(outputs) != 4:
            raise ModelError(
                f"model {model}: the ssd decoder needs four outputs (boxes, classes, scores, "
                f"count), the model has {len(outputs)}"
            )
        order = list(roles) if roles is not None else list(SSD_OUTPUTS)
        self.index = {role: order.index(role) for role in SSD_OUTPUTS}
        self.check_swap = roles is None
        boxes = outputs[self.index["boxes"]].shape
        if boxes[-1] != 4:
            raise ModelError(
                f"model {model}: output {self.index['boxes']} should hold boxes (... x 4), "
                f"it is {boxes}; set `outputs` in the manifest to the model's order"
            )
        self.labels = tuple(labels)
        self.max_detections = max_detections

    def __call__(
        self, outputs: Sequence[np.ndarray], placement: Placement, min_score: float
    ) -> list[Detection]:
        boxes = outputs[self.index["boxes"]].reshape(-1, 4)
        classes = outputs[self.index["classes"]].reshape(-1)
        scores = outputs[self.index["scores"]].reshape(-1)
        count = int(outputs[self.index["count"]].reshape(-1)[0])
        n = max(0, min(count, len(scores), len(boxes), self.max_detections))
        if self.check_swap and n and _whole(scores[:n]) and not _whole(classes[:n]):
            classes, scores = scores, classes
        found = []
        for i in range(n):
            score = float(scores[i])
            cls = int(round(float(classes[i])))
            if score < min_score or not 0 <= cls < len(self.labels):
                continue
            label = self.labels[cls]
            if label == "???":
                continue
            y0, x0, y1, x1 = (float(v) for v in np.clip(boxes[i], 0.0, 1.0))
            fx = placement.to_frame_x(np.array([x0, x1]))
            fy = placement.to_frame_y(np.array([y0, y1]))
            found.append(Detection(label, round(score, 4), _clip(fx, fy, placement)))
        found.sort(key=lambda d: -d.score)
        return found


def _whole(values: np.ndarray) -> bool:
    return bool(np.all(values == np.round(values)))


def _clip(fx: np.ndarray, fy: np.ndarray, p: Placement) -> tuple[float, float, float, float]:
    w, h = float(p.frame_w), float(p.frame_h)
    return (
        min(max(float(fx[0]), 0.0), w),
        min(max(float(fy[0]), 0.0), h),
        min(max(float(fx[1]), 0.0), w),
        min(max(float(fy[1]), 0.0), h),
    )

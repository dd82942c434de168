"""YOLOv8 exported to TFLite by Ultralytics: one output of 1 x (4 + classes) x N (or its
transpose), each of the N candidates a box (x_center, y_center, w, h; normalized to the input
by the TFLite export, or in input pixels with ``box_units = "pixels"``) and one score per class
(already sigmoid). A candidate's label is its best class; boxes of one label go through NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.manifest import ModelError
from sensors.detection.base import Detection
from sensors.detection.nms import hard_nms
from sensors.detection.preprocess import Placement
from sensors.detection.runtime import TensorInfo


class YoloV8Decoder:
    def __init__(
        self,
        outputs: Sequence[TensorInfo],
        labels: Sequence[str],
        *,
        input_size: tuple[int, int],
        box_units: str = "normalized",
        nms_iou: float = 0.45,
        max_detections: int = 100,
        model: str = "yolov8",
    ) -> None:
        self.labels = tuple(labels)
        rows = 4 + len(self.labels)
        shape = outputs[0].shape if len(outputs) == 1 else ()
        if len(shape) != 3 or rows not in shape[1:]:
            raise ModelError(
                f"model {model}: the yolov8 decoder needs one output of 1 x {rows} x N "
                f"(4 box values and {len(self.labels)} labels), the model has "
                f"{[o.shape for o in outputs]}"
            )
        self.transposed = shape[1] != rows  # 1 x N x rows
        self.rows = rows
        self.input_w, self.input_h = input_size
        self.pixels = box_units == "pixels"
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def __call__(
        self, outputs: Sequence[np.ndarray], placement: Placement, min_score: float
    ) -> list[Detection]:
        out = outputs[0].reshape(-1, self.rows) if self.transposed else outputs[0][0].T
        class_scores = out[:, 4:]
        best = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(best)), best]
        keep = np.flatnonzero(scores >= min_score)
        if keep.size == 0:
            return []
        xywh = out[keep, :4].astype(np.float64)
        if self.pixels:
            xywh = xywh / np.array([self.input_w, self.input_h, self.input_w, self.input_h])
        xc, yc, w, h = xywh.T
        boxes = np.stack(
            [
                placement.to_frame_x(xc - w / 2),
                placement.to_frame_y(yc - h / 2),
                placement.to_frame_x(xc + w / 2),
                placement.to_frame_y(yc + h / 2),
            ],
            axis=1,
        )
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, placement.frame_w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, placement.frame_h)
        scores, best = scores[keep], best[keep]
        found: list[Detection] = []
        for cls in np.unique(best):
            idx = np.flatnonzero(best == cls)
            for i in hard_nms(boxes[idx], scores[idx], self.nms_iou, self.max_detections):
                j = idx[i]
                x0, y0, x1, y1 = (float(v) for v in boxes[j])
                label = self.labels[int(cls)]
                found.append(Detection(label, round(float(scores[j]), 4), (x0, y0, x1, y1)))
        found.sort(key=lambda d: -d.score)
        return found[: self.max_detections]

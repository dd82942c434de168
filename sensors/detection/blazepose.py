"""MediaPipe's BlazePose person detector: SSD anchors, box and keypoint regression, weighted NMS.

The model (``pose_detection.tflite``, 224x224x3 float in [-1, 1], letterboxed) has two outputs:
2,254 x 12 regressors and 2,254 x 1 score logits, one row per anchor. Decoding follows MediaPipe's
pose detection graph:

- anchors from ``SsdAnchorsCalculator`` with num_layers 5, strides 8, 16, 32, 32, 32, aspect
  ratio 1.0, interpolated scale aspect ratio 1.0, fixed anchor size, anchor offset 0.5: two
  anchors per cell of a 28x28, a 14x14 and (three layers of stride 32 merged) six per cell of a
  7x7 grid = 1,568 + 392 + 294 = 2,254;
- ``TensorsToDetectionsCalculator``: score = sigmoid(logit clipped to +-100); a row is
  (x_center, y_center, w, h, then 4 keypoints x, y), each divided by 224 and scaled by the
  anchor's size (1) and offset by its centre;
- ``NonMaxSuppressionCalculator``: IoU, WEIGHTED, min suppression threshold 0.3;
- the letterbox is undone (``DetectionProjectionCalculator``).

The box the model regresses is the face. Its keypoints are 0: mid-hip centre, 1: a point whose
distance from the hip is the radius of the circle around the whole body (MediaPipe's
``AlignmentPointsRectsCalculator`` turns them into the body's region), 2: mid-shoulder centre,
3: the same for the upper body. The person's box is the axis-aligned square around that circle,
joined with the face box, and clipped to the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.manifest import ModelError
from sensors.detection.base import Detection
from sensors.detection.nms import weighted_nms
from sensors.detection.preprocess import Placement
from sensors.detection.runtime import TensorInfo

SCORE_CLIP = 100.0
NUM_KEYPOINTS = 4


@dataclass(frozen=True)
class AnchorOptions:
    """The fields of MediaPipe's ``SsdAnchorsCalculatorOptions`` that BlazePose models use."""

    input_w: int = 224
    input_h: int = 224
    num_layers: int = 5
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True


def _scale(options: AnchorOptions, index: int) -> float:
    if options.num_layers == 1:
        return (options.min_scale + options.max_scale) / 2
    span = options.max_scale - options.min_scale
    return options.min_scale + span * index / (options.num_layers - 1)


def ssd_anchors(options: AnchorOptions) -> np.ndarray:
    """Anchors as N x 4 (x_center, y_center, w, h), normalized, in MediaPipe's order."""
    out: list[np.ndarray] = []
    layer = 0
    while layer < options.num_layers:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer  # layers with the same stride share one feature map
        while last < options.num_layers and options.strides[last] == options.strides[layer]:
            scale = _scale(options, last)
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in options.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if options.interpolated_scale_aspect_ratio > 0.0:
                    following = 1.0 if last == options.num_layers - 1 else _scale(options, last + 1)
                    scales.append(math.sqrt(scale * following))
                    ratios.append(options.interpolated_scale_aspect_ratio)
            last += 1
        sizes = np.array(
            [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios, strict=True)]
        )
        if options.fixed_anchor_size:
            sizes = np.ones_like(sizes)
        stride = options.strides[layer]
        rows = math.ceil(options.input_h / stride)
        cols = math.ceil(options.input_w / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack(
            [
                (xs.ravel() + options.anchor_offset_x) / cols,
                (ys.ravel() + options.anchor_offset_y) / rows,
            ],
            axis=1,
        )
        n = len(sizes)
        layer_anchors = np.concatenate(
            [np.repeat(centres, n, axis=0), np.tile(sizes, (len(centres), 1))], axis=1
        )
        out.append(layer_anchors)
        layer = last
    return np.concatenate(out).astype(np.float32)


class BlazePoseDecoder:
    """Turns the pose detector's two output tensors into ``person`` detections."""

    def __init__(
        self,
        outputs: Sequence[TensorInfo],
        *,
        input_size: tuple[int, int] = (224, 224),
        nms_iou: float = 0.3,
        max_detections: int = 20,
        label: str = "person",
        model: str = "pose-detection",
    ) -> None:
        self.anchors = ssd_anchors(AnchorOptions(input_w=input_size[0], input_h=input_size[1]))
        n = len(self.anchors)
        self.coords = 4 + 2 * NUM_KEYPOINTS
        shapes = [o.shape for o in outputs]
        try:
            self._boxes = next(i for i, s in enumerate(shapes) if s[-2:] == (n, self.coords))
            self._scores = next(i for i, s in enumerate(shapes) if s[-2:] == (n, 1))
        except StopIteration:
            raise ModelError(
                f"model {model}: the blazepose decoder needs outputs of {n}x{self.coords} and "
                f"{n}x1 (its anchors for a {input_size[0]}x{input_size[1]} input), "
                f"the model has {shapes}"
            ) from None
        # Each row decodes as raw * mul + add: divided by the input size and scaled by the
        # anchor's size, plus the anchor's centre for positions (not for the box's w and h).
        scale = np.tile([float(input_size[0]), float(input_size[1])], self.coords // 2)
        sizes = np.tile(self.anchors[:, 2:4], self.coords // 2)
        self._mul = (sizes / scale).astype(np.float32)
        self._add = np.tile(self.anchors[:, 0:2], self.coords // 2).astype(np.float32)
        self._add[:, 2:4] = 0.0
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.label = label

    def __call__(
        self, outputs: Sequence[np.ndarray], placement: Placement, min_score: float
    ) -> list[Detection]:
        logits = outputs[self._scores].reshape(-1)
        # sigmoid(x) >= min_score  <=>  x >= logit(min_score): the exp runs on the few kept
        keep = np.flatnonzero(logits >= _logit(min_score))
        if keep.size == 0:
            return []
        clipped = np.clip(logits[keep].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
        scores = 1.0 / (1.0 + np.exp(-clipped))
        rows = outputs[self._boxes].reshape(-1, self.coords)[keep] * self._mul[keep]
        rows += self._add[keep]
        xc, yc, half_w, half_h = rows[:, 0], rows[:, 1], rows[:, 2] / 2, rows[:, 3] / 2
        face = np.stack([xc - half_w, yc - half_h, xc + half_w, yc + half_h], axis=1)
        groups = weighted_nms(face, scores, rows[:, 4:], self.nms_iou, self.max_detections)
        return [self._person(box, score, kps, placement) for box, score, kps in groups]

    def _person(
        self, face: np.ndarray, score: float, keypoints: np.ndarray, p: Placement
    ) -> Detection:
        sx, sy = p.scale_x / p.input_w, p.scale_y / p.input_h  # normalized input -> frame
        ox, oy = p.offset_x / p.input_w, p.offset_y / p.input_h
        f0, f1, f2, f3 = face.tolist()
        hip_x, hip_y, size_x, size_y = keypoints[:4].tolist()
        cx, cy = (hip_x - ox) / sx, (hip_y - oy) / sy
        radius = math.hypot((size_x - hip_x) / sx, (size_y - hip_y) / sy)
        w, h = float(p.frame_w), float(p.frame_h)
        box = (
            min(max(min((f0 - ox) / sx, cx - radius), 0.0), w),
            min(max(min((f1 - oy) / sy, cy - radius), 0.0), h),
            min(max(max((f2 - ox) / sx, cx + radius), 0.0), w),
            min(max(max((f3 - oy) / sy, cy + radius), 0.0), h),
        )
        return Detection(self.label, round(score, 4), box)


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))

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
        self.scale_w, self.scale_h = float(input_size[0]), float(input_size[1])
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.label = label

    def __call__(
        self, outputs: Sequence[np.ndarray], placement: Placement, min_score: float
    ) -> list[Detection]:
        logits = outputs[self._scores].reshape(-1).astype(np.float64)  # exp(100) > float32
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
        keep = np.flatnonzero(scores >= min_score)
        if keep.size == 0:
            return []
        raw = outputs[self._boxes].reshape(-1, self.coords)[keep]
        anchors = self.anchors[keep]
        ax, ay, aw, ah = anchors[:, 0:1], anchors[:, 1:2], anchors[:, 2:3], anchors[:, 3:4]
        xs = raw[:, 0::2] / self.scale_w * aw  # x_center, w, then the keypoints' x
        ys = raw[:, 1::2] / self.scale_h * ah
        xc, yc = xs[:, 0] + ax[:, 0], ys[:, 0] + ay[:, 0]
        w, h = xs[:, 1], ys[:, 1]
        face = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
        kx, ky = xs[:, 2:] + ax, ys[:, 2:] + ay
        keypoints = np.stack([kx, ky], axis=2).reshape(len(keep), -1)
        groups = weighted_nms(face, scores[keep], keypoints, self.nms_iou, self.max_detections)
        return [self._person(box, score, kps, placement) for box, score, kps in groups]

    def _person(
        self, face: np.ndarray, score: float, keypoints: np.ndarray, p: Placement
    ) -> Detection:
        fx = p.to_frame_x(face[0::2])
        fy = p.to_frame_y(face[1::2])
        kx = p.to_frame_x(keypoints[0::2])
        ky = p.to_frame_y(keypoints[1::2])
        radius = math.hypot(float(kx[1] - kx[0]), float(ky[1] - ky[0]))
        x0 = min(float(fx[0]), float(kx[0]) - radius)
        y0 = min(float(fy[0]), float(ky[0]) - radius)
        x1 = max(float(fx[1]), float(kx[0]) + radius)
        y1 = max(float(fy[1]), float(ky[0]) + radius)
        box = (
            min(max(x0, 0.0), float(p.frame_w)),
            min(max(y0, 0.0), float(p.frame_h)),
            min(max(x1, 0.0), float(p.frame_w)),
            min(max(y1, 0.0), float(p.frame_h)),
        )
        return Detection(self.label, round(score, 4), box)

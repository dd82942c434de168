"""Non-maximum suppression: one box per object out of the many a detector proposes."""

from __future__ import annotations

import numpy as np


def iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each row of ``boxes`` (N x 4, x0 y0 x1 y1) with ``box``."""
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 2], box[2])
    y1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_box = (box[2] - box[0]) * (box[3] - box[1])
    union = area + area_box - inter
    return np.where(union > 0.0, inter / np.where(union > 0.0, union, 1.0), 0.0)


def hard_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, max_out: int) -> list[int]:
    """Indices of the boxes kept, best first: each drops the later ones overlapping it by
    more than ``threshold`` (IoU)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_out:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[rest], boxes[best]) <= threshold]
    return keep


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, extras: np.ndarray, threshold: float, max_out: int
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED suppression: the best remaining box and every box overlapping it
    by more than ``threshold`` (IoU) become one detection, whose box and ``extras`` (e.g.
    keypoints, N x K) are their score-weighted mean and whose score is the best one's.

    Returns (box, score, extras) triples, best first.
    """
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[np.ndarray, float, np.ndarray]] = []
    while order.size and len(out) < max_out:
        best = int(order[0])
        overlap = iou(boxes[order], boxes[best]) > threshold
        overlap[0] = True  # the best box always belongs to its own group
        group = order[overlap]
        weights = scores[group]
        total = float(weights.sum())
        if group.size > 1 and total > 0.0:
            box = (boxes[group] * weights[:, None]).sum(axis=0) / total
            extra = (extras[group] * weights[:, None]).sum(axis=0) / total
        else:
            box, extra = boxes[best].copy(), extras[best].copy()
        out.append((box, float(scores[best]), extra))
        order = order[~overlap]
    return out

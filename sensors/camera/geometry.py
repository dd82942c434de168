"""Boxes, polygons and the regions the detector looks at.

A box is ``(x_min, y_min, x_max, y_max)`` in pixels of the full frame. Polygons from the
settings are normalised (0..1) and scaled to a frame's size here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from settings.cameras import Polygon

if TYPE_CHECKING:
    import numpy as np

Box = tuple[float, float, float, float]


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    """The area two boxes share."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def bottom_centre(box: Box) -> tuple[float, float]:
    """Where a standing person's feet are: the point zones and masks are tested with."""
    return ((box[0] + box[2]) / 2.0, box[3])


def inside(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> bool:
    """Whether ``point`` lies in ``polygon`` (same units), by ray casting; edges count inside."""
    x, y = point
    n = len(polygon)
    hit = False
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        # On an edge: inside.
        cross = (xj - xi) * (y - yi) - (yj - yi) * (x - xi)
        if (
            abs(cross) < 1e-9
            and min(xi, xj) - 1e-9 <= x <= max(xi, xj) + 1e-9
            and min(yi, yj) - 1e-9 <= y <= max(yi, yj) + 1e-9
        ):
            return True
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


def inside_normalised(
    point: tuple[float, float], polygon: Polygon, width: int, height: int
) -> bool:
    """``point`` in pixels of a ``width`` x ``height`` frame, against a normalised polygon."""
    return inside((point[0] / width, point[1] / height), polygon)


def mask_raster(polygons: Iterable[Polygon], width: int, height: int) -> np.ndarray | None:
    """A ``height`` x ``width`` bool array, True where a polygon covers; None without polygons."""
    import cv2
    import numpy as np

    polys = list(polygons)
    if not polys:
        return None
    raster = np.zeros((height, width), np.uint8)
    for poly in polys:
        pts = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly])
        cv2.fillPoly(raster, [pts.astype(np.int32)], 1)
    return raster.astype(bool)


def clamp_box(box: Box, width: int, height: int) -> Box:
    return (
        min(max(box[0], 0.0), float(width)),
        min(max(box[1], 0.0), float(height)),
        min(max(box[2], 0.0), float(width)),
        min(max(box[3], 0.0), float(height)),
    )


def square_region(box: Box, margin: float, min_side: float, width: int, height: int) -> Box:
    """A square around ``box``, grown by ``margin`` of its size on each side, at least
    ``min_side``, moved (not cut) to stay inside the frame where it fits."""
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h) * (1.0 + 2.0 * margin)
    side = min(max(side, min_side), float(max(width, height)))
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    x0 = min(max(x0, 0.0), max(0.0, width - side))
    y0 = min(max(y0, 0.0), max(0.0, height - side))
    return clamp_box((x0, y0, x0 + side, y0 + side), width, height)


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def detection_regions(
    boxes: Sequence[Box],
    *,
    width: int,
    height: int,
    margin: float,
    min_region: float,
    max_regions: int,
) -> list[Box]:
    """The regions of a ``width`` x ``height`` frame to run the detector on for these boxes.

    Each box becomes a square (see ``square_region``); overlapping squares are merged. More
    than ``max_regions`` regions, or regions covering most of the frame, become the whole frame
    (one detector call is cheaper than several that see the same pixels).
    """
    if not boxes:
        return []
    full: Box = (0.0, 0.0, float(width), float(height))
    min_side = min_region * min(width, height)
    regions = [square_region(b, margin, min_side, width, height) for b in boxes]
    merged = True
    while merged:
        merged = False
        out: list[Box] = []
        for r in regions:
            for i, o in enumerate(out):
                if overlaps(r, o):
                    u = union(r, o)
                    side_box = square_region(u, 0.0, 0.0, width, height)
                    out[i] = side_box
                    merged = True
                    break
            else:
                out.append(r)
        regions = out
    if len(regions) > max_regions or sum(area(r) for r in regions) >= 0.6 * width * height:
        return [full]
    return regions


def nms(items: Sequence[tuple[Box, float]], threshold: float = 0.5) -> list[int]:
    """Indices of ``(box, score)`` items kept by greedy non-maximum suppression."""
    order = sorted(range(len(items)), key=lambda i: items[i][1], reverse=True)
    keep: list[int] = []
    for i in order:
        if all(iou(items[i][0], items[k][0]) < threshold for k in keep):
            keep.append(i)
    return keep

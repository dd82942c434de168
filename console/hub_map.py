"""The commune's map, drawn from the hubs' configured coordinates: no tiles, no internet.

An equirectangular projection (longitude scaled by the cosine of the middle latitude, so a
commune's few kilometres keep their shape) fitted into the drawing with a margin, north up.
One hub, or hubs all at one place, sit in the middle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from console.hub_view import HubView

WIDTH, HEIGHT, MARGIN = 800.0, 500.0, 40.0


@dataclass(frozen=True)
class MapDot:
    hub: HubView
    x: float
    y: float
    colour: str  # a class name: alarm, trouble, offline, never, ok

    @property
    def label_left(self) -> bool:
        """The name goes left of a dot near the right edge, so it stays in the picture."""
        return self.x > WIDTH * 0.7


def colour(view: HubView) -> str:
    if view.open_priority == 0:
        return "alarm"
    if view.status == "never":
        return "never"
    if view.status == "offline":
        return "offline"
    if view.open_priority is not None and view.open_priority <= 1:
        return "trouble"
    return "ok"


def place(views: Sequence[HubView]) -> tuple[list[MapDot], list[HubView]]:
    """(the dots of the hubs with coordinates, the hubs without)."""
    located = [v for v in views if v.latitude is not None and v.longitude is not None]
    elsewhere = [v for v in views if v.latitude is None or v.longitude is None]
    if not located:
        return [], elsewhere
    lats = [float(v.latitude) for v in located if v.latitude is not None]
    lons = [float(v.longitude) for v in located if v.longitude is not None]
    mid_lat = math.radians((min(lats) + max(lats)) / 2)
    xs = [lon * math.cos(mid_lat) for lon in lons]
    ys = lats
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    scale = min(
        inner_w / span_x if span_x > 0 else math.inf, inner_h / span_y if span_y > 0 else math.inf
    )
    if not math.isfinite(scale):
        scale = 0.0
    # Centre the drawing: the hubs' box in the middle of the picture.
    off_x = (WIDTH - span_x * scale) / 2
    off_y = (HEIGHT - span_y * scale) / 2
    west, north = min(xs), max(ys)  # once, not per hub: a province has thousands
    dots = [
        MapDot(
            hub=v,
            x=round(off_x + (x - west) * scale, 1),
            y=round(off_y + (north - y) * scale, 1),  # north up
            colour=colour(v),
        )
        for v, x, y in zip(located, xs, ys, strict=True)
    ]
    return dots, elsewhere

"""What a camera needs to run: plain frozen dataclasses, checked when made.

Nothing here imports numpy or OpenCV, so the configuration can build these objects on a hub
without cameras. Polygons are in normalised frame coordinates (``x`` and ``y`` from 0 to 1,
origin top left) so one configuration fits any resolution. Every check raises ``ValueError``
with a message that names the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import time as dtime

Point = tuple[float, float]
Polygon = tuple[Point, ...]

SOURCE_KINDS = ("auto", "picamera", "usb", "stream", "file", "images")

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def check_polygon(polygon: Polygon, what: str) -> None:
    """At least three points, each inside the unit square."""
    if len(polygon) < 3:
        raise ValueError(f"{what}: a polygon needs at least 3 points, got {len(polygon)}")
    for x, y in polygon:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"{what}: point ({x}, {y}) is outside the frame (0..1)")


def parse_range(text: str) -> tuple[dtime, dtime | None]:
    """``"22:00-06:00"`` -> (22:00, 06:00). The end ``24:00`` is returned as ``None``."""
    m = _RANGE.match(text)
    if not m:
        raise ValueError(f"armed hours {text!r}: expected HH:MM-HH:MM, e.g. 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"armed hours {text!r}: not a time of day")
    start = dtime(h1, m1)
    end = None if h2 == 24 else dtime(h2, m2)
    if end == start:
        raise ValueError(f"armed hours {text!r}: start and end are the same time")
    return start, end


@dataclass(frozen=True)
class ZoneSettings:
    """A zone of a camera's view in which a person is an incident.

    ``name`` is the event's zone. An empty ``polygon`` is the whole frame. A detection counts in
    the zone by the bottom-centre point of its box (where the feet are), after ``inertia``
    consecutive frames there. ``armed`` lists local-time ranges (``"22:00-06:00"`` crosses
    midnight); empty means always armed.
    """

    name: str
    polygon: Polygon = ()
    armed: tuple[str, ...] = ()
    inertia: int = 3

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("zone: name must not be empty")
        if self.polygon:
            check_polygon(self.polygon, f"zone {self.name}: polygon")
        for text in self.armed:
            parse_range(text)
        if self.inertia < 1:
            raise ValueError(f"zone {self.name}: inertia must be at least 1")


@dataclass(frozen=True)
class FilterSettings:
    """When a detection is believed, as NVRs that few false alarms come from do it.

    ``min_score``: a single detection below it is dropped. ``threshold``: a tracked object
    counts only while the median of its last ``history`` scores reaches it, and only after
    ``min_frames`` detections. ``min_area``/``max_area``: the box's share of the frame area.
    ``min_ratio``/``max_ratio``: the box's width over height.
    """

    min_score: float = 0.5
    threshold: float = 0.7
    history: int = 10
    min_frames: int = 3
    min_area: float = 0.0
    max_area: float = 1.0
    min_ratio: float = 0.0
    max_ratio: float = math.inf

    def __post_init__(self) -> None:
        for name in ("min_score", "threshold", "min_area", "max_area"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"filters: {name} must be between 0 and 1, not {value}")
        if self.min_area > self.max_area:
            raise ValueError("filters: min_area is larger than max_area")
        if self.min_ratio < 0 or self.min_ratio > self.max_ratio:
            raise ValueError("filters: need 0 <= min_ratio <= max_ratio")
        if self.history < 1 or self.min_frames < 1:
            raise ValueError("filters: history and min_frames must be at least 1")


@dataclass(frozen=True)
class MotionSettings:
    """Motion detection on a small grayscale copy of each frame; it gates the detector.

    The frame is scaled to ``width`` pixels wide. A pixel has changed when it differs from the
    running-average background by more than ``threshold`` (0-255); changed areas smaller than
    ``contour_area`` pixels (at that width) are noise. The background follows the scene at
    ``alpha`` per frame. When more than ``lightning`` of the frame changes at once (lightning,
    headlights, the camera switching to infrared) the background is taken anew and the frame
    counts as still. ``enabled = False`` runs the detector on every frame.

    ``margin``: the detector looks at a square around each moving area, grown by this share
    of its size on each side and at least ``min_region`` of the frame's shorter side. Objects
    already tracked are looked at again every ``recheck_s`` seconds even without motion, so a
    person standing still stays seen.
    """

    enabled: bool = True
    width: int = 160
    threshold: int = 25
    contour_area: int = 12
    alpha: float = 0.05
    lightning: float = 0.8
    margin: float = 0.5
    min_region: float = 0.5
    recheck_s: float = 1.0
    max_regions: int = 3

    def __post_init__(self) -> None:
        if not 32 <= self.width <= 640:
            raise ValueError("motion: width must be between 32 and 640 pixels")
        if not 1 <= self.threshold <= 255:
            raise ValueError("motion: threshold must be between 1 and 255")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError("motion: alpha must be in (0, 1]")
        if not 0.0 < self.lightning <= 1.0:
            raise ValueError("motion: lightning must be in (0, 1]")
        if self.contour_area < 0 or self.margin < 0 or not 0.0 <= self.min_region <= 1.0:
            raise ValueError("motion: contour_area and margin >= 0, min_region in 0..1")
        if self.recheck_s <= 0 or self.max_regions < 1:
            raise ValueError("motion: recheck_s must be positive and max_regions at least 1")


@dataclass(frozen=True)
class TamperSettings:
    """Camera tamper: covered, defocused or sprayed, turned away (see sensors/camera/tamper.py).

    The view is checked every ``check_s`` seconds on a ``width``-pixel grayscale copy. The first
    ``learn_s`` seconds learn the reference; it then follows the scene with a time constant of
    ``adapt_s`` seconds, only while nothing is wrong. A condition must last ``persist_s`` to be
    reported, and be gone for ``persist_s`` to be restored.

    * covered: the picture's standard deviation under ``covered_std`` (0-255): a hand, tape,
      a bag or a black frame.
    * defocused: sharpness (variance of the Laplacian over the picture's variance) under
      ``blur_ratio`` of the reference's.
    * turned away: the share of the reference's textured cells whose edges still match falls
      under ``scene_match`` while the picture is sharp.
    """

    enabled: bool = True
    width: int = 160
    check_s: float = 0.5
    learn_s: float = 2.0
    adapt_s: float = 600.0
    persist_s: float = 5.0
    covered_std: float = 8.0
    blur_ratio: float = 0.3
    scene_match: float = 0.35
    grid: int = 4

    def __post_init__(self) -> None:
        if not 32 <= self.width <= 640:
            raise ValueError("tamper: width must be between 32 and 640 pixels")
        for name in ("check_s", "learn_s", "adapt_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"tamper: {name} must be positive")
        if self.persist_s < 0 or self.covered_std < 0:
            raise ValueError("tamper: persist_s and covered_std must not be negative")
        if not 0.0 < self.blur_ratio < 1.0 or not 0.0 < self.scene_match < 1.0:
            raise ValueError("tamper: blur_ratio and scene_match must be between 0 and 1")
        if not 2 <= self.grid <= 16:
            raise ValueError("tamper: grid must be between 2 and 16")


@dataclass(frozen=True)
class CameraSettings:
    """One camera.

    ``source`` says where frames come from; ``kind`` how (``auto`` guesses from ``source``):

    * ``picamera``: a Raspberry Pi camera through picamera2, ``source`` = ``"picamera"`` or
      ``"picamera:1"`` (camera number);
    * ``usb``: a V4L2 camera through OpenCV, ``source`` = ``"/dev/video0"`` or ``"usb:0"``;
    * ``stream``: an IP camera through OpenCV/FFmpeg, ``source`` = ``"rtsp://..."``,
      ``"rtsps://..."``, ``"http://..."``;
    * ``file``: a video file; ``images``: a folder of JPEG/PNG files (both may ``loop``).

    ``zone`` is the event zone of the camera's own troubles (offline, tamper); it defaults to
    the camera's name. With no ``zones`` the whole frame is one zone named ``zone``. ``masks``
    are polygons where motion and detections are ignored. ``width``/``height`` ask the device
    for a frame size (picamera, usb). ``labels`` are the detector labels that make incidents.
    """

    name: str
    source: str
    kind: str = "auto"
    zone: str = ""
    detect_fps: float = 5.0
    width: int | None = None
    height: int | None = None
    loop: bool = False
    zones: tuple[ZoneSettings, ...] = ()
    masks: tuple[Polygon, ...] = ()
    labels: tuple[str, ...] = ("person",)
    filters: FilterSettings = field(default_factory=FilterSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)
    tamper: TamperSettings = field(default_factory=TamperSettings)
    end_after_s: float = 10.0
    offline_after_s: float = 10.0
    stall_s: float = 10.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    snapshot_margin: float = 0.3
    snapshot_quality: int = 85

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("camera: name must not be empty")
        where = f"camera {self.name}"
        if not self.source:
            raise ValueError(f"{where}: source must not be empty")
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(SOURCE_KINDS)}")
        if not 0.1 <= self.detect_fps <= 30:
            raise ValueError(f"{where}: detect_fps must be between 0.1 and 30")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= 8192:
                raise ValueError(f"{where}: {name} must be between 16 and 8192 pixels")
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: zone names must be unique")
        for n, mask in enumerate(self.masks):
            check_polygon(mask, f"{where}: masks[{n}]")
        if not self.labels:
            raise ValueError(f"{where}: labels must not be empty")
        for name in (
            "end_after_s",
            "offline_after_s",
            "stall_s",
            "open_timeout_s",
            "read_timeout_s",
            "backoff_min_s",
        ):
            if getattr(self, name) < 0 or (name != "offline_after_s" and not getattr(self, name)):
                raise ValueError(f"{where}: {name} must be positive")
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError(f"{where}: backoff_max_s is smaller than backoff_min_s")
        if not 0.0 <= self.snapshot_margin <= 2.0:
            raise ValueError(f"{where}: snapshot_margin must be between 0 and 2")
        if not 10 <= self.snapshot_quality <= 95:
            raise ValueError(f"{where}: snapshot_quality must be between 10 and 95")

    @property
    def event_zone(self) -> str:
        return self.zone or self.name

    @property
    def effective_zones(self) -> tuple[ZoneSettings, ...]:
        """The configured zones, or the whole frame as one zone named ``event_zone``."""
        return self.zones or (ZoneSettings(self.event_zone),)

    @property
    def source_kind(self) -> str:
        """``kind``, or what ``source`` looks like when ``kind`` is ``auto``."""
        return self.kind if self.kind != "auto" else guess_kind(self.source)


def guess_kind(source: str) -> str:
    """The source kind a ``source`` string looks like (a folder is ``images``, else ``file``)."""
    import os

    lowered = source.lower()
    if lowered.startswith(("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")):
        return "stream"
    if lowered == "picamera" or lowered.startswith("picamera:"):
        return "picamera"
    if lowered.startswith(("/dev/video", "usb:")) or source.isdigit():
        return "usb"
    if os.path.isdir(source):
        return "images"
    return "file"

"""``[detection]``, ``[snapshots]`` and ``[[cameras]]`` with their zones, masks, filters, motion
and tamper tables (docs/cameras.md, docs/detection.md).

These models are what the camera pipeline reads (``sensors.camera``): there is no other copy
of a camera's settings. A camera built in code (``CameraConfig(name="cam-1", source=...)``) is
checked as one read from a file is. Polygons are in normalised frame coordinates (``x`` and
``y`` from 0 to 1, origin top left) so one configuration fits any resolution.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from settings.base import Frozen, load_context, zone_from_name
from settings.errors import KeyPath, error_at, errors_at
from settings.validators import (
    ConfigDir,
    Name,
    NonNegativeSeconds,
    Number,
    Seconds,
    Share,
    Zone,
    between,
    non_empty,
)

DEFAULT_MODEL = "pose-detection"
CameraRole = Literal["doorway", "gate"]
# The model each role runs unless the camera names one (figures: docs/detection.md). A doorway
# sees people close and facing it; a gate sees them small, from behind, at night, among animals.
ROLE_MODELS: dict[str, str] = {"doorway": "pose-detection", "gate": "ssd-mobilenet-v2"}
# What a role changes in its cameras' tables, unless the camera sets those fields itself (the
# figures behind them: docs/detection.md, `python -m bench.detect_eval`). A gate looks at tight
# regions around what moves, so a person 8 % of the frame tall fills much of the SSD's input,
# and the SSD's person scores there (0.84-0.97, none above 0.25 on anything else) allow a lower
# median. A doorway keeps the tables' own defaults: no area filter separated BlazePose's false
# person on a distant cup from real people in the figures.
ROLE_DEFAULTS: dict[str, dict[str, dict[str, float]]] = {
    "doorway": {},
    "gate": {"motion": {"min_region": 0.15, "margin": 0.25}, "filters": {"threshold": 0.6}},
}
# Labels of a COCO detector that turn down a "person" on the same spot: an animal never makes
# a person incident (a detector without these labels, as BlazePose, is unaffected).
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "bear", "teddy bear")
SNAPSHOT_MB = 1_000_000  # bytes in one ``snapshots.max_mb``

Point = tuple[Number, Number]
Polygon = tuple[Point, ...]

CameraKind = Literal["auto", "picamera", "usb", "stream", "file", "images"]

Pixels = Annotated[StrictInt, between(32, 640, " pixels")]
Positive = Annotated[StrictInt, Field(ge=1)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Fraction = Annotated[Number, between(0, 1, above_low=True)]
"""More than 0 and at most 1."""
StrictFraction = Annotated[Number, between(0, 1, above_low=True, below_high=True)]
"""More than 0 and less than 1."""

_T = TypeVar("_T")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_URL_CREDENTIALS = re.compile(r"(?<=//)[^/@]*@")


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/...`` -> ``rtsp://***@host/...``"""
    return _URL_CREDENTIALS.sub("***@", url)


def polygon_problem(polygon: Polygon) -> str | None:
    """What is wrong with a polygon (at least three points, each inside the frame), or None."""
    if len(polygon) < 3:
        return f"a polygon needs at least 3 points, got {len(polygon)}"
    for x, y in polygon:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return f"point ({x}, {y}) is outside the frame (0..1)"
    return None


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


def _range_problem(text: str) -> str | None:
    try:
        parse_range(text)
    except ValueError as exc:
        return str(exc)
    return None


def _first_refused(
    values: Sequence[_T], problem: Callable[[_T], str | None]
) -> tuple[KeyPath, str] | None:
    """The first entry of an array that ``problem`` refuses, at its index; at the array itself
    when no entry passes (a single mask, or all of them wrong)."""
    problems = [problem(value) for value in values]
    refused = [index for index, found in enumerate(problems) if found]
    if not refused:
        return None
    first = problems[refused[0]]
    assert first is not None
    return ((refused[0],) if len(refused) < len(values) else ()), first


def _order_errors(table: BaseModel, low: str, high: str, message: str) -> list[tuple[KeyPath, str]]:
    """``low`` must not be above ``high``. The key to blame is the one the file gave that breaks
    the rule beside the other's default (``backoff_min_s = 70`` beside the default
    ``backoff_max_s`` of 60); when each is fine beside the other's default, the table."""
    low_value, high_value = getattr(table, low), getattr(table, high)
    if low_value <= high_value:
        return []
    defaults = {name: info.default for name, info in type(table).model_fields.items()}
    given = table.model_fields_set
    breaks = {low: low_value > defaults[high], high: defaults[low] > high_value}
    blamed = [key for key in (low, high) if key in given and breaks[key]]
    return [((key,), message) for key in blamed] or [((), message)]


def _where(table: str, info: ValidationInfo) -> str:
    """``"zone yard"``: which table a field validator's error is about, for its text."""
    name = info.data.get("name")
    return f"{table} {name}" if isinstance(name, str) else table


def camera_source(value: str, info: ValidationInfo) -> str:
    """A camera's ``source``: a URL, device or ``picamera``/``usb:N`` as written, or a video file
    or picture folder, whose relative path starts at the config file's folder."""
    if not value:
        raise ValueError("must not be empty")
    if (
        _SCHEME.match(value)
        or value.isdigit()
        or value.startswith("/")
        or value.lower() == "picamera"  # the first Pi camera, as "picamera:0"
    ):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = load_context(info).base_dir / path
    return os.path.normpath(path)


def guess_kind(source: str) -> str:
    """The source kind a ``source`` string looks like (a folder is ``images``, else ``file``)."""
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


class DetectionConfig(Frozen):
    """``[detection]``: the detector every camera shares (a model of ``models/manifest.toml``)."""

    models_dir: ConfigDir | None = None
    model: Annotated[StrictStr, Field(min_length=1)] = DEFAULT_MODEL
    threads: Annotated[StrictInt, Field(ge=1, le=16)] = 2
    min_score: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] | None = None

    @field_validator("model", mode="after")
    @classmethod
    def _model_in_manifest(cls, value: str, info: ValidationInfo) -> str:
        if "models_dir" not in info.data:  # models_dir itself is invalid, already reported
            return value
        from models.manifest import ModelError, get_spec

        try:
            get_spec(value, info.data["models_dir"])
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        return value

    def labels(self) -> tuple[str, ...] | None:
        """The model's labels, or None if its manifest cannot be read."""
        from models.manifest import ModelError, get_spec

        try:
            return get_spec(self.model, self.models_dir).labels
        except ModelError:
            return None


class SnapshotsConfig(Frozen):
    """``[snapshots]``: the JPEGs of person incidents, in ``<data dir>/snapshots``."""

    max_mb: Annotated[float, Field(strict=True, gt=0, le=1_000_000, allow_inf_nan=False)] = 200.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * SNAPSHOT_MB)


class ZoneConfig(Frozen):
    """``[[cameras.zones]]``: a zone of a camera's view in which a person is an incident.

    ``name`` is the event's zone. An empty ``polygon`` is the whole frame. A detection counts in
    the zone by the bottom-centre point of its box (where the feet are), after ``inertia``
    consecutive frames there. ``armed`` lists local-time ranges (``"22:00-06:00"`` crosses
    midnight); empty means always armed.
    """

    name: Zone
    polygon: Polygon = ()
    armed: tuple[StrictStr, ...] = ()
    inertia: Positive = 3

    @field_validator("polygon", mode="after")
    @classmethod
    def _inside_the_frame(cls, value: Polygon, info: ValidationInfo) -> Polygon:
        problem = polygon_problem(value) if value else None
        if problem:
            raise error_at((), problem, where=_where("zone", info), key="polygon")
        return value

    @field_validator("armed", mode="after")
    @classmethod
    def _times_of_day(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        refused = _first_refused(value, _range_problem)
        if refused:
            raise error_at(*refused, where=_where("zone", info), key="armed")
        return value


class FilterConfig(Frozen):
    """``[cameras.filters]``: when a detection is believed, as NVRs that few false alarms come
    from do it.

    ``min_score``: a single detection below it is dropped. ``threshold``: a tracked object
    counts only while the median of its last ``history`` scores reaches it, and only after
    ``min_frames`` detections. ``min_area``/``max_area``: the box's share of the frame area.
    ``min_ratio``/``max_ratio``: the box's width over height.
    """

    min_score: Share = 0.5
    threshold: Share = 0.7
    history: Positive = 10
    min_frames: Positive = 3
    min_area: Share = 0.0
    max_area: Share = 1.0
    min_ratio: NonNegative = 0.0
    max_ratio: Annotated[float, Field(strict=True, gt=0)] = math.inf  # inf: no limit

    @model_validator(mode="after")
    def _bounds_in_order(self) -> FilterConfig:
        errors = _order_errors(self, "min_area", "max_area", "min_area is larger than max_area")
        errors += _order_errors(
            self, "min_ratio", "max_ratio", "min_ratio is larger than max_ratio"
        )
        if errors:
            raise errors_at(errors, where="filters")
        return self


class MotionConfig(Frozen):
    """``[cameras.motion]``: motion detection on a small grayscale copy of each frame; it gates
    the detector.

    The frame is scaled to ``width`` pixels wide. A pixel has changed when it differs from the
    running-average background by more than ``threshold`` (0-255); changed areas smaller than
    ``contour_area`` pixels (at that width) are noise. The background follows the scene at
    ``alpha`` per frame. When more than ``lightning`` of the frame changes at once (lightning,
    headlights, the camera switching to infrared) the background is taken anew and the frame
    counts as still. ``enabled = false`` runs the detector on every frame.

    ``margin``: the detector looks at a square around each moving area, grown by this share
    of its size on each side and at least ``min_region`` of the frame's shorter side. Objects
    already tracked are looked at again every ``recheck_s`` seconds even without motion, so a
    person standing still stays seen.
    """

    enabled: StrictBool = True
    width: Pixels = 160
    threshold: Annotated[StrictInt, between(1, 255)] = 25
    contour_area: Annotated[StrictInt, Field(ge=0)] = 12
    alpha: Fraction = 0.05
    lightning: Fraction = 0.8
    margin: NonNegative = 0.5
    min_region: Share = 0.5
    recheck_s: Seconds = 1.0
    max_regions: Positive = 3


class TamperConfig(Frozen):
    """``[cameras.tamper]``: covered, defocused or sprayed, turned away
    (``sensors/camera/tamper.py``).

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

    enabled: StrictBool = True
    width: Pixels = 160
    check_s: Seconds = 0.5
    learn_s: Seconds = 2.0
    adapt_s: Seconds = 600.0
    persist_s: NonNegativeSeconds = 5.0
    covered_std: NonNegative = 8.0
    blur_ratio: StrictFraction = 0.3
    scene_match: StrictFraction = 0.35
    grid: Annotated[StrictInt, between(2, 16)] = 4


class CameraConfig(Frozen):
    """``[[cameras]]``: one camera, its zones, masks and filters (docs/cameras.md).

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
    A lost source is opened again after ``backoff_min_s``, doubling up to ``backoff_max_s``.

    ``model`` names the detector model this camera runs (of ``models/manifest.toml``); without
    it, ``role`` picks one (``doorway``: close, people facing the lens; ``gate``: distant,
    animals about; see ``ROLE_MODELS``), and without a role the camera runs ``[detection]``'s
    model. Cameras of the same model share one detector. ``reject``: labels that turn down a
    ``person`` detection they overlap with a higher score (animals, by default).
    """

    name: Name
    source: Annotated[StrictStr, AfterValidator(camera_source)]
    kind: CameraKind = "auto"
    zone: Zone = ""
    detect_fps: Annotated[Number, between(0.1, 30)] = 5.0
    width: Annotated[StrictInt, between(16, 8192, " pixels")] | None = None
    height: Annotated[StrictInt, between(16, 8192, " pixels")] | None = None
    loop: StrictBool = False
    zones: tuple[ZoneConfig, ...] = ()
    masks: tuple[Polygon, ...] = ()
    labels: Annotated[tuple[StrictStr, ...], AfterValidator(non_empty("label"))] = ("person",)
    role: CameraRole | None = None
    model: Annotated[StrictStr, Field(min_length=1)] | None = None
    reject: tuple[StrictStr, ...] = ANIMALS
    filters: FilterConfig = Field(default_factory=FilterConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    tamper: TamperConfig = Field(default_factory=TamperConfig)
    end_after_s: Seconds = 10.0
    offline_after_s: NonNegativeSeconds = 10.0
    stall_s: Seconds = 10.0
    open_timeout_s: Seconds = 10.0
    read_timeout_s: Seconds = 5.0
    backoff_min_s: Seconds = 1.0
    backoff_max_s: Seconds = 60.0
    snapshot_margin: Annotated[Number, between(0, 2)] = 0.3
    snapshot_quality: Annotated[StrictInt, between(10, 95)] = 85

    @model_validator(mode="before")
    @classmethod
    def _default_zone(cls, data: Any) -> Any:
        return zone_from_name(data)

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, data: Any) -> Any:
        """The role's defaults under the fields the camera's own tables give (a table given
        as an object, in code, is taken as it is)."""
        if not isinstance(data, dict) or data.get("role") not in ROLE_DEFAULTS:
            return data
        data = dict(data)
        for table, fields in ROLE_DEFAULTS[data["role"]].items():
            given = data.get(table, {})
            if isinstance(given, dict):
                data[table] = {**fields, **given}
        return data

    @field_validator("zones", mode="after")
    @classmethod
    def _unique_zones(
        cls, value: tuple[ZoneConfig, ...], info: ValidationInfo
    ) -> tuple[ZoneConfig, ...]:
        names = [zone.name for zone in value]
        if len(set(names)) != len(names):
            where = _where("camera", info)
            raise error_at((), "zone names must be unique", where=where, key="zones")
        return value

    @field_validator("masks", mode="after")
    @classmethod
    def _masks_inside_the_frame(
        cls, value: tuple[Polygon, ...], info: ValidationInfo
    ) -> tuple[Polygon, ...]:
        refused = _first_refused(value, polygon_problem)
        if refused:
            raise error_at(*refused, where=_where("camera", info), key="masks")
        return value

    @model_validator(mode="after")
    def _backoff_in_order(self) -> CameraConfig:
        message = "backoff_max_s is smaller than backoff_min_s"
        errors = _order_errors(self, "backoff_min_s", "backoff_max_s", message)
        if errors:
            raise errors_at(errors, where=f"camera {self.name}")
        return self

    def model_for(self, default: str | None) -> str:
        """The model this camera runs: its ``model``, else its role's, else ``default`` (the
        ``[detection]`` model)."""
        if self.model:
            return self.model
        if self.role:
            return ROLE_MODELS[self.role]
        return default or DEFAULT_MODEL

    @property
    def event_zone(self) -> str:
        """The zone of the camera's own events (offline, tamper)."""
        return self.zone or self.name

    @property
    def effective_zones(self) -> tuple[ZoneConfig, ...]:
        """The configured zones, or the whole frame as one zone named ``event_zone``."""
        return self.zones or (ZoneConfig(name=self.event_zone),)

    @property
    def source_kind(self) -> str:
        """``kind``, or what ``source`` looks like when ``kind`` is ``auto``."""
        return self.kind if self.kind != "auto" else guess_kind(self.source)

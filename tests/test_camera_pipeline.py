"""The camera pipeline with the real detector on a real photographed person walking through a
generated street: one incident per person and zone (start and end), snapshots, armed hours,
masks, filters, and motion gating that keeps the detector idle while nothing moves."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from camera_scenes import Clip, FakeClock, ListSource, still, walk
from PIL import Image

from core.events import Event
from sensors.camera.cameras import Cameras
from sensors.camera.geometry import Box, detection_regions, iou
from sensors.camera.inference import SharedDetector
from sensors.camera.pipeline import CameraPipeline
from sensors.camera.schedule import Schedule
from sensors.camera.snapshots import SnapshotStore, crop_jpeg
from sensors.camera.sources import Frame
from sensors.camera.tracker import Seen, Tracker
from settings.cameras import (
    CameraConfig,
    FilterConfig,
    MotionConfig,
    TamperConfig,
    ZoneConfig,
)

FPS = 5.0
NOON = datetime(2026, 3, 14, 12, 0)
NIGHT = datetime(2026, 3, 14, 23, 30)
RIGHT_HALF = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))


class Counting:
    """The real detector, counting the frames it is given."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.name = detector.name
        self.calls = 0
        self.pixels = 0

    def detect(self, frame: np.ndarray) -> Sequence[Any]:
        self.calls += 1
        self.pixels += frame.shape[0] * frame.shape[1]
        return list(self.detector.detect(frame))


@pytest.fixture(scope="module")
def detector() -> Any:
    from sensors.detection import load_detector

    return load_detector(threads=2)


@pytest.fixture(scope="module")
def clip() -> Clip:
    return walk()


def camera(**kw: Any) -> CameraConfig:
    kw.setdefault("zones", (ZoneConfig(name="yard", polygon=RIGHT_HALF),))
    return CameraConfig(
        name="cam-1",
        source="virtual",
        zone="gate",
        detect_fps=FPS,
        tamper=TamperConfig(enabled=False),
        **kw,
    )


def play(
    frames: Sequence[np.ndarray] | Iterator[np.ndarray],
    settings: CameraConfig,
    detector: Any,
    *,
    now: datetime = NIGHT,
    snapshots: SnapshotStore | None = None,
) -> tuple[list[Event], CameraPipeline]:
    clock = FakeClock()
    events: list[Event] = []
    pipe = CameraPipeline(
        settings,
        emit=events.append,
        detector=detector,
        snapshot=snapshots.put if snapshots else None,
        source=ListSource(frames, clock),
        clock=clock,
        sleep=clock.sleep,
        now=lambda: now,
    )
    pipe.run()
    assert pipe.ended and pipe.stats.errors == 0
    return events, pipe


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.kind, e.qualifier) for e in events]


def contains(outer: Sequence[float], point: tuple[float, float]) -> bool:
    return outer[0] <= point[0] <= outer[2] and outer[1] <= point[1] <= outer[3]


# -- the detector sees the person we composite -------------------------------------------------


def test_the_detector_finds_the_walking_person(detector: Any, clip: Clip) -> None:
    """The clip is only a fair test if the real model recognises the person at this size."""
    found = 0
    whole = [i for i, t in enumerate(clip.truth) if t and t[0] > 0 and t[2] < 320]
    for i in whole:
        truth = clip.truth[i]
        assert truth is not None
        people = [d for d in detector.detect(clip.frames[i]) if d.label == "person"]
        if any(d.score >= 0.7 and iou(tuple(d.box), truth) > 0.2 for d in people):
            found += 1
    assert found >= 0.8 * len(whole), f"person found in {found} of {len(whole)} frames"
    empty = [d for d in detector.detect(clip.frames[0]) if d.label == "person" and d.score > 0.5]
    assert empty == [], "nobody in the empty street"


# -- incidents ----------------------------------------------------------------------------------


def test_a_person_walking_through_a_zone_is_one_incident(
    detector: Any, clip: Clip, tmp_path: Path
) -> None:
    store = SnapshotStore(tmp_path / "snapshots", max_bytes=10_000_000)
    events, pipe = play(clip.frames, camera(), Counting(detector), snapshots=store)
    assert kinds(events) == [("person", "E"), ("person", "R")]
    start, end = events
    assert start.zone == "yard" and start.source == "cam-1" and end.zone == "yard"
    d = start.data
    assert d["camera"] == "cam-1" and d["zone"] == "yard" and d["label"] == "person"
    assert d["score"] >= 0.5 and d["median_score"] >= 0.7 and d["frame"] == [320, 240]
    assert d["snapshot"] == f"snapshot/{start.id}"
    assert end.data["incident"] == start.id and end.data["duration_s"] > 0

    # The box is the person's where the incident started: its foot point is in the zone, and
    # it lies on the person as composited in some frame of the walk.
    box = d["box"]
    assert (box[0] + box[2]) / 2 >= 160
    assert max(iou(tuple(box), t) for t in clip.truth if t) > 0.3

    jpeg = store.get(start.id)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    picture = Image.open(io.BytesIO(jpeg))
    x0, y0, x1, y1 = d["snapshot_box"]
    assert picture.size == (x1 - x0, y1 - y0)
    assert contains(d["snapshot_box"], (box[0], box[1])) and contains(
        d["snapshot_box"], (box[2], box[3])
    ), "the snapshot holds the whole box"


def test_the_same_walk_while_the_zone_is_disarmed_is_nothing(detector: Any, clip: Clip) -> None:
    night_only = camera(
        zones=(ZoneConfig(name="yard", polygon=RIGHT_HALF, armed=("22:00-06:00",)),)
    )
    events, pipe = play(clip.frames, night_only, detector, now=NOON)
    assert events == []
    assert pipe.stats.detections > 0, "the person was seen, but the zone was not armed"
    events, _ = play(clip.frames, night_only, detector, now=NIGHT)
    assert kinds(events) == [("person", "E"), ("person", "R")]


def test_a_mask_over_the_path_hides_the_person(detector: Any, clip: Clip) -> None:
    street_level = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))
    events, _ = play(clip.frames, camera(masks=(street_level,)), detector)
    assert events == []


def test_a_zone_the_person_never_reaches_is_nothing(detector: Any, clip: Clip) -> None:
    sky = ((0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.3))
    events, _ = play(clip.frames, camera(zones=(ZoneConfig(name="roof", polygon=sky),)), detector)
    assert events == []


def test_max_area_filters_out_the_person(detector: Any, clip: Clip) -> None:
    events, _ = play(clip.frames, camera(filters=FilterConfig(max_area=0.05)), detector)
    assert events == []


def test_without_zones_the_whole_frame_is_the_cameras_zone(detector: Any, clip: Clip) -> None:
    events, _ = play(clip.frames, camera(zones=()), detector)
    assert kinds(events) == [("person", "E"), ("person", "R")]
    assert {e.zone for e in events} == {"gate"}


# -- motion gating ------------------------------------------------------------------------------


def test_a_still_scene_keeps_the_detector_idle(detector: Any) -> None:
    counting = Counting(detector)
    frames = list(still(n=100))
    events, pipe = play(frames, camera(), counting)
    assert events == []
    assert pipe.stats.frames == 100
    assert counting.calls <= 0.1 * len(frames), f"{counting.calls} detector calls"


def test_motion_gating_runs_the_detector_only_around_the_walk(detector: Any, clip: Clip) -> None:
    gated, ungated = Counting(detector), Counting(detector)
    events_g, pipe_g = play(clip.frames, camera(), gated)
    events_u, pipe_u = play(clip.frames, camera(motion=MotionConfig(enabled=False)), ungated)
    assert kinds(events_g) == kinds(events_u) == [("person", "E"), ("person", "R")]
    assert ungated.calls == len(clip.frames) == pipe_u.stats.detector_frames
    walking = sum(1 for t in clip.truth if t)
    # The walk, a few frames of rechecks after it, nothing in the still frames.
    assert pipe_g.stats.detector_frames <= walking + 10
    assert gated.pixels < 0.5 * ungated.pixels


# -- several cameras, one detector ----------------------------------------------------------


def test_two_cameras_share_one_detector_on_their_own_threads(detector: Any, clip: Clip) -> None:
    events: list[Event] = []
    lock = threading.Lock()

    def emit(e: Event) -> None:
        with lock:
            events.append(e)

    clocks = {"cam-1": FakeClock(), "cam-2": FakeClock()}
    cams = Cameras(
        [
            camera(),
            CameraConfig(
                name="cam-2",
                source="virtual",
                detect_fps=FPS,
                tamper=TamperConfig(enabled=False),
            ),
        ],
        emit=emit,
        detector=detector,
        sources={n: ListSource(clip.frames, c) for n, c in clocks.items()},
        now=lambda: NIGHT,
    )
    for name, c in clocks.items():  # each camera on its own fake clock
        cams[name].clock = c
        cams[name]._sleep = c.sleep
    cams.start()
    for p in cams.pipelines.values():
        assert p._thread is not None
        p._thread.join(60)
    cams.stop()
    assert sorted((e.source, e.zone, e.qualifier) for e in events) == [
        ("cam-1", "yard", "E"),
        ("cam-1", "yard", "R"),
        ("cam-2", "cam-2", "E"),
        ("cam-2", "cam-2", "R"),
    ]
    health = cams.health()
    assert isinstance(cams.detector, SharedDetector)
    assert health["detector"]["calls"] == sum(
        h["detector_calls"] for h in health["cameras"].values()
    )


# -- the parts on their own -------------------------------------------------------------------


def test_armed_hours_cross_midnight() -> None:
    night = Schedule(["22:00-06:00"])
    at = lambda h, m=0: datetime(2026, 1, 1, h, m)  # noqa: E731
    assert night.armed(at(22)) and night.armed(at(23, 59)) and night.armed(at(0))
    assert night.armed(at(5, 59)) and not night.armed(at(6)) and not night.armed(at(12))
    assert not night.armed(at(21, 59))
    day = Schedule(["08:00-12:00", "13:00-17:30"])
    assert day.armed(at(8)) and not day.armed(at(12, 30)) and day.armed(at(17, 29))
    assert Schedule(["00:00-24:00"]).armed(at(23, 59)) and Schedule([]).armed(at(3))
    for bad in ("22-06", "25:00-06:00", "22:00-22:00", "10:61-11:00"):
        with pytest.raises(ValueError, match="armed hours"):
            Schedule([bad])


def test_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="zone yard: polygon: a polygon needs at least 3"):
        ZoneConfig(name="yard", polygon=((0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(ValueError, match="outside the frame"):
        ZoneConfig(name="yard", polygon=((0.0, 0.0), (1.5, 0.0), (1.0, 1.0)))
    with pytest.raises(ValueError, match="threshold"):
        FilterConfig(threshold=1.5)
    with pytest.raises(ValueError, match="zone names must be unique"):
        CameraConfig(name="c", source="x.mp4", zones=(ZoneConfig(name="a"), ZoneConfig(name="a")))
    with pytest.raises(ValueError, match="detect_fps"):
        CameraConfig(name="c", source="x.mp4", detect_fps=0)


def test_tracker_counts_an_object_by_its_median_score() -> None:
    tracker = Tracker(FilterConfig(min_frames=3, threshold=0.7, history=5))
    box: Box = (10.0, 10.0, 50.0, 110.0)
    look = [(0.0, 0.0, 200.0, 200.0)]
    scores = [0.95, 0.55, 0.6, 0.62, 0.9, 0.91, 0.93]
    confirmed = []
    for n, s in enumerate(scores):
        shifted: Box = (box[0] + 3 * n, box[1], box[2] + 3 * n, box[3])
        [track] = tracker.update([Seen("person", s, shifted)], look, float(n))
        confirmed.append(track.confirmed)
    # One confident frame does not make a person; the median of the last five does.
    assert confirmed == [False, False, False, False, False, False, True]
    assert len(tracker.tracks) == 1 and tracker.tracks[0].hits == len(scores)
    for n in range(6):  # looked there and found nothing: lost after max_misses
        tracker.update([], look, 10.0 + n)
    assert tracker.tracks == []


def test_regions_are_squares_around_motion_merged_or_the_whole_frame() -> None:
    small = detection_regions(
        [(100.0, 100.0, 110.0, 120.0)],
        width=640,
        height=480,
        margin=0.5,
        min_region=0.5,
        max_regions=3,
    )
    [(x0, y0, x1, y1)] = small
    assert x1 - x0 == y1 - y0 == 240 and x0 <= 100 and x1 >= 110
    two = detection_regions(
        [(10.0, 10.0, 20.0, 20.0), (600.0, 400.0, 620.0, 420.0)],
        width=640,
        height=480,
        margin=0.5,
        min_region=0.3,
        max_regions=3,
    )
    assert len(two) == 2
    many = detection_regions(
        [(float(x), 10.0, x + 5.0, 15.0) for x in range(0, 640, 100)],
        width=640,
        height=480,
        margin=0.5,
        min_region=0.2,
        max_regions=3,
    )
    assert many == [(0.0, 0.0, 640.0, 480.0)]


def test_snapshot_store_keeps_the_newest_under_its_cap(tmp_path: Path) -> None:
    import os

    store = SnapshotStore(tmp_path, max_bytes=3_500)
    ids = [f"0190aaaa-0000-7000-8000-00000000000{i}" for i in range(6)]
    for n, event_id in enumerate(ids):
        path = store.put(event_id, bytes([n]) * 1_000)
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
    kept = sorted(p.stem for p in tmp_path.glob("*.jpg"))
    assert kept == ids[-3:]
    assert store.total_bytes() <= 3_500
    assert store.get(ids[-1]) == bytes([5]) * 1_000 and store.get(ids[0]) is None
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError):
        store.put("../../etc/passwd", b"x")


def test_a_snapshot_is_a_jpeg_of_the_crop_in_its_own_colours_the_receiver_accepts() -> None:
    from commune.snapshots import is_jpeg

    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :160] = (200, 40, 30)  # red on the left, blue on the right: RGB, not BGR
    frame[:, 160:] = (30, 40, 200)
    jpeg = crop_jpeg(frame, (100.0, 20.0, 220.0, 220.0), quality=85)
    assert is_jpeg(jpeg)
    picture = Image.open(io.BytesIO(jpeg))
    assert picture.format == "JPEG" and picture.mode == "RGB" and picture.size == (120, 200)
    pixels = np.asarray(picture).astype(int)
    assert np.abs(pixels[100, 20] - (200, 40, 30)).max() < 12
    assert np.abs(pixels[100, 100] - (30, 40, 200)).max() < 12


def test_a_person_lingering_in_the_zone_is_still_one_incident(detector: Any) -> None:
    """Walks in, stands still for 30 s (the background absorbs them; rechecks keep them seen),
    walks on: one start, one end, and the detector is not run on every still frame."""
    lingering = walk(stand_at=0.75, stand=150)
    counting = Counting(detector)
    events, pipe = play(lingering.frames, camera(), counting)
    assert kinds(events) == [("person", "E"), ("person", "R")]
    assert events[1].data["duration_s"] >= 30.0
    assert counting.calls < 0.5 * len(lingering.frames)


def test_crossing_two_zones_is_one_incident_in_each(detector: Any, clip: Clip) -> None:
    left = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    zones = (ZoneConfig(name="gate", polygon=left), ZoneConfig(name="yard", polygon=RIGHT_HALF))
    events, _ = play(clip.frames, camera(zones=zones), detector)
    assert [(e.zone, e.qualifier) for e in events if e.qualifier == "E"] == [
        ("gate", "E"),
        ("yard", "E"),
    ]
    assert sorted((e.zone, e.qualifier) for e in events) == [
        ("gate", "E"),
        ("gate", "R"),
        ("yard", "E"),
        ("yard", "R"),
    ]


def test_a_bad_frame_is_counted_and_the_camera_goes_on(detector: Any, clip: Clip) -> None:
    grey = np.zeros((240, 320), np.uint8)  # a virtual camera sending the wrong thing
    frames = [grey, *clip.frames]
    clock = FakeClock()
    events: list[Event] = []
    pipe = CameraPipeline(
        camera(),
        emit=events.append,
        detector=detector,
        source=ListSource(frames, clock),
        clock=clock,
        sleep=clock.sleep,
        now=lambda: NIGHT,
    )
    with pytest.raises(ValueError, match="H x W x 3 uint8 RGB"):
        pipe.process(Frame(grey, 0.0))
    pipe.run()
    assert pipe.stats.errors == 1
    assert kinds(events) == [("person", "E"), ("person", "R")]

"""One camera's pipeline: frames in, events out, on the camera's own thread.

For each frame taken at the detect rate:

1. tamper: the view is compared with its learned reference (``tamper.py``);
2. motion: a small grayscale copy against a running-average background (``motion.py``);
3. detection, only where something moved (and, every ``recheck_s``, where an object is already
   tracked, so a person standing still stays seen): the shared detector runs on square regions
   around the motion, and boxes are mapped back to the frame;
4. filters: label, per-detection ``min_score``, box area and ratio, masks (by the box's
   bottom-centre point);
5. tracking by box overlap; an object counts once it has ``min_frames`` detections, and while
   the median of its recent scores reaches ``threshold``;
6. zones: a counted object that stays in an armed zone starts an incident, reported as
   ``person`` E (with a snapshot) and, once the zone is empty for ``end_after_s``, ``person`` R
   (``incidents.py``).

A source that fails to open, raises, or sends nothing for ``stall_s`` is closed and opened
again with exponential backoff and jitter (``backoff_min_s`` doubling to ``backoff_max_s``).
Once it has been lost for ``offline_after_s`` one ``camera_offline`` E is reported; the first
frame after that reports ``camera_offline`` R. A short hiccup reports nothing.

Everything is timed by the frames' times and the injected ``clock`` (monotonic seconds), and
armed hours by the injected ``now`` (local time), so tests run clips faster than real time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from core.events import NEW, RESTORE, Event
from sensors.camera.geometry import (
    Box,
    area,
    bottom_centre,
    detection_regions,
    inside_normalised,
    intersection,
    iou,
    nms,
)
from sensors.camera.incidents import Incidents, SnapshotSink
from sensors.camera.inference import DetectionLike, DetectorLike
from sensors.camera.motion import MotionDetector, small_gray
from sensors.camera.sources import EndOfStream, Frame, FrameSource, make_source
from sensors.camera.tamper import TamperChange, TamperDetector
from sensors.camera.tracker import Seen, Track, Tracker
from settings.cameras import CameraConfig

log = logging.getLogger(__name__)

Emit = Callable[[Event], Any]
ERROR_LOG_INTERVAL_S = 60.0


@dataclass
class CameraStats:
    """Counters since start (written by the camera's thread, read by health)."""

    frames: int = 0  # frames processed
    dropped: int = 0  # frames a live source sent that the detect rate did not need
    motion_frames: int = 0
    detector_frames: int = 0  # frames on which the detector ran
    detector_calls: int = 0  # regions it ran on
    detections: int = 0  # detections that passed the filters
    rejected: int = 0  # "person" detections turned down by an animal on the same spot
    incidents: int = 0
    opens: int = 0
    open_failures: int = 0
    losses: int = 0
    errors: int = 0


@dataclass
class FrameResult:
    """What one frame did (for tests, the benchmark and debugging)."""

    ts: float
    motion: list[Box]
    regions: list[Box]
    seen: list[Seen]
    tracks: list[Track]
    events: list[Event]


class CameraPipeline:
    """One camera. ``start`` runs it on its own thread; ``run`` runs it on the caller's.

    ``emit`` receives every event; it is called from the camera's thread and must be quick
    and thread-safe (the hub's ``emit``). ``snapshot(event_id, jpeg)`` is called just before
    the ``person`` event it belongs to is emitted. ``detector`` is shared between cameras
    (wrap it in ``SharedDetector``); ``None`` leaves motion, tamper and offline reporting only.
    ``source`` replaces the one ``settings`` describe (the simulator's virtual camera).
    """

    def __init__(
        self,
        settings: CameraConfig,
        *,
        emit: Emit,
        detector: DetectorLike | None = None,
        snapshot: SnapshotSink | None = None,
        source: FrameSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
        now: Callable[[], datetime] = datetime.now,
        clock_synced: Callable[[], bool] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.emit = emit
        self.detector = detector
        self.clock = clock
        self.jitter = jitter
        self.source: FrameSource = (
            source if source is not None else make_source(settings, clock=clock)
        )
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._thread: threading.Thread | None = None
        self.motion = MotionDetector(settings.motion, settings.masks)
        self.tamper = TamperDetector(settings.tamper)
        self.tracker = Tracker(settings.filters)
        self.incidents = Incidents(
            settings,
            deliver=self._deliver,
            detector_name=detector.name if detector is not None else None,
            snapshot=snapshot,
            now=now,
            clock_synced=clock_synced,
        )
        self.stats = CameraStats()
        self.ended = False  # a file source without loop reached its end
        self._is_open = False
        self._lost_since: float | None = None
        self._lost_reason = ""
        self._offline = False
        self._last_frame: float | None = None
        self._last_recheck = -1e18
        self._error_logged = -1e18

    # -- life cycle -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def offline(self) -> bool:
        return self._offline

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"camera {self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the source. Reports nothing (open incidents stay open)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("camera %s: still busy %.0f s after stop", self.name, timeout)
                return  # the thread closes the source when it gets out of its read
        self._close()

    def run(self) -> None:
        """The camera's loop, until ``stop`` or the end of a file source."""
        s = self.settings
        period = 1.0 / s.detect_fps
        delay = s.backoff_min_s
        retry_at = self.clock()
        next_due: float | None = None
        fresh = False  # opened, and no frame yet since
        while not self._stop.is_set():
            now = self.clock()
            if not self._is_open:
                if now < retry_at:
                    self._wait_until(retry_at)
                    continue
                try:
                    self.source.open()
                except Exception as exc:
                    self.stats.open_failures += 1
                    self._lost(f"cannot open: {exc}")
                    retry_at = self.clock() + self._backoff(delay)
                    delay = min(delay * 2.0, s.backoff_max_s)
                    continue
                self._is_open, fresh, next_due = True, True, None
                self._last_frame = self.clock()
                self.stats.opens += 1
                log.info("camera %s: %s open", self.name, self.source.description)
                continue
            if not self.source.live and next_due is not None and now < next_due:
                self._sleep(next_due - now)
                continue
            try:
                frame = self.source.read()
            except EndOfStream:
                log.info("camera %s: end of %s", self.name, self.source.description)
                self.ended = True
                break
            except Exception as exc:
                self._close()
                self._lost(str(exc))
                retry_at = self.clock() + self._backoff(delay)
                delay = min(delay * 2.0, s.backoff_max_s)
                continue
            if frame is None:
                now = self.clock()
                last = self._last_frame if self._last_frame is not None else now
                if now - last >= s.stall_s:
                    self._close()
                    self._lost(f"no frame for {now - last:.1f} s")
                    retry_at = now + self._backoff(delay)
                    delay = min(delay * 2.0, s.backoff_max_s)
                else:
                    self.incidents.end_due(now)
                continue
            self._last_frame = self.clock()
            if fresh:
                fresh = False
                delay = s.backoff_min_s
                self._found()
            if self.source.live and next_due is not None and frame.ts < next_due - period / 4:
                self.stats.dropped += 1
                continue
            if next_due is None or frame.ts - next_due > period:
                next_due = frame.ts + period
            else:
                next_due += period
            try:
                self.process(frame)
            except Exception:
                self.stats.errors += 1
                if self.clock() - self._error_logged >= ERROR_LOG_INTERVAL_S:
                    self._error_logged = self.clock()
                    log.exception("camera %s: a frame could not be processed", self.name)
        self._close()

    def _backoff(self, delay: float) -> float:
        """``delay`` with up to a fifth of jitter either way, so cameras do not retry in step."""
        return delay * (0.8 + 0.4 * self.jitter())

    def _wait_until(self, t: float) -> None:
        """Sleep towards ``t``, waking to report an offline camera or end incidents on time."""
        now = self.clock()
        wake = t
        if self._lost_since is not None and not self._offline:
            wake = min(wake, self._lost_since + self.settings.offline_after_s)
        incident_end = self.incidents.next_end()
        if incident_end is not None:
            wake = min(wake, incident_end)
        self._sleep(max(0.0, min(wake - now, 1.0)) or 0.001)
        now = self.clock()
        self._check_offline(now)
        self.incidents.end_due(now)

    def _close(self) -> None:
        if self._is_open:
            self._is_open = False
            try:
                self.source.close()
            except Exception:
                log.exception("camera %s: closing %s failed", self.name, self.source.description)

    # -- offline / restore ------------------------------------------------------------------

    def _lost(self, reason: str) -> None:
        if self._lost_since is None:
            self._lost_since = self.clock()
            self.stats.losses += 1
            log.warning("camera %s: %s lost: %s", self.name, self.source.description, reason)
        self._lost_reason = reason
        self.motion.reset()
        self._check_offline(self.clock())

    def _check_offline(self, now: float) -> None:
        if self._offline or self._lost_since is None:
            return
        if now - self._lost_since >= self.settings.offline_after_s:
            self._offline = True
            self._send(
                "camera_offline",
                NEW,
                self.settings.event_zone,
                {"source": self.source.description, "error": self._lost_reason[:200]},
            )

    def _found(self) -> None:
        """Frames flow (again)."""
        if self._lost_since is None:
            return
        down_s = self.clock() - self._lost_since
        self._lost_since = None
        if self._offline:
            self._offline = False
            self._send(
                "camera_offline", RESTORE, self.settings.event_zone, {"down_s": round(down_s, 3)}
            )
        log.info("camera %s: frames again after %.1f s", self.name, down_s)

    # -- one frame --------------------------------------------------------------------------

    def process(self, frame: Frame) -> FrameResult:
        """Run one frame through tamper, motion, detection, tracking and zones."""
        s = self.settings
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"camera {self.name}: a frame must be H x W x 3 uint8 RGB, "
                f"not {image.shape} {image.dtype}"
            )
        ts = frame.ts
        width, height = frame.size
        self.stats.frames += 1
        events: list[Event] = []
        work_width = max(s.motion.width, s.tamper.width if s.tamper.enabled else 0)
        gray = frame.gray if frame.gray is not None else small_gray(frame.image, work_width)

        change = self.tamper.update(gray, ts)
        if change is not None:
            events.append(self._tamper_event(change))

        motion: list[Box] = []
        if s.motion.enabled:
            motion = self.motion.detect(gray, (width, height)).boxes
            look = list(motion)
            if motion:
                self.stats.motion_frames += 1
            if self.tracker.tracks and ts - self._last_recheck >= s.motion.recheck_s:
                look += [t.box for t in self.tracker.tracks]
            if look:
                self._last_recheck = ts
            regions = detection_regions(
                look,
                width=width,
                height=height,
                margin=s.motion.margin,
                min_region=s.motion.min_region,
                max_regions=s.motion.max_regions,
            )
        else:
            regions = [(0.0, 0.0, float(width), float(height))]

        seen = self._detect(frame.image, regions) if regions and self.detector else []
        matched = self.tracker.update(seen, regions if self.detector else [], ts)
        started = self.incidents.update(frame, matched)
        self.stats.incidents += len(started)
        events += started
        events += self.incidents.end_due(ts)
        return FrameResult(ts, motion, regions, seen, matched, events)

    def _detect(self, image: np.ndarray, regions: list[Box]) -> list[Seen]:
        assert self.detector is not None
        s = self.settings
        f = s.filters
        height, width = image.shape[:2]
        frame_area = float(width * height)
        found: list[tuple[Box, float, str]] = []
        self.stats.detector_frames += 1
        for x0, y0, x1, y1 in regions:
            ix0, iy0, ix1, iy1 = int(x0), int(y0), int(x1), int(y1)
            if ix1 - ix0 < 8 or iy1 - iy0 < 8:
                continue
            crop = np.ascontiguousarray(image[iy0:iy1, ix0:ix1])
            self.stats.detector_calls += 1
            found_here = list(self.detector.detect(crop))
            for d in found_here:
                if d.label not in s.labels or d.score < f.min_score:
                    continue
                if d.label == "person" and rejected_by(d, found_here, s.reject):
                    self.stats.rejected += 1
                    continue
                bx0, by0, bx1, by1 = d.box
                box = (
                    max(0.0, bx0 + ix0),
                    max(0.0, by0 + iy0),
                    min(float(width), bx1 + ix0),
                    min(float(height), by1 + iy0),
                )
                bw, bh = box[2] - box[0], box[3] - box[1]
                if bw <= 0 or bh <= 0:
                    continue
                share = area(box) / frame_area
                if not f.min_area <= share <= f.max_area:
                    continue
                if not f.min_ratio <= bw / bh <= f.max_ratio:
                    continue
                foot = bottom_centre(box)
                if any(inside_normalised(foot, m, width, height) for m in s.masks):
                    continue
                found.append((box, float(d.score), d.label))
        keep = nms([(b, sc) for b, sc, _ in found])
        seen = [Seen(found[i][2], found[i][1], found[i][0]) for i in sorted(keep)]
        self.stats.detections += len(seen)
        return seen

    # -- events -----------------------------------------------------------------------------

    def _tamper_event(self, change: TamperChange) -> Event:
        data = {"reason": change.reason, **change.metrics}
        return self._send(
            "camera_tamper", NEW if change.active else RESTORE, self.settings.event_zone, data
        )

    def _send(self, kind: str, qualifier: str, zone: str, data: dict[str, Any]) -> Event:
        event = Event(
            kind=kind,
            zone=zone,
            source=self.settings.name,
            qualifier=qualifier,
            data={"camera": self.settings.name, **data},
        )
        self._deliver(event)
        return event

    def _deliver(self, event: Event) -> None:
        log.info("camera %s: %s %s zone=%s", self.name, event.kind, event.qualifier, event.zone)
        try:
            self.emit(event)
        except Exception:
            log.exception("camera %s: could not report %s", self.name, event.kind)

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "source": self.source.description,
            "open": self._is_open,
            "offline": self._offline,
            "tamper": self.tamper.reason if self.tamper.active else None,
            "last_frame_age_s": None
            if self._last_frame is None
            else round(max(0.0, now - self._last_frame), 1),
            "incidents_open": self.incidents.open_zones,
            **self.stats.__dict__,
        }


REJECT_IOU = 0.4  # a "person" box overlapping an animal's this much is the same object
REJECT_COVER = 0.7  # ... or lying this much inside it


def rejected_by(
    person: DetectionLike, found: Sequence[DetectionLike], reject: Sequence[str]
) -> bool:
    """A COCO detector that calls a spot both "person" and "cat" is seeing a cat when the cat
    scores at least as high: an animal never makes a person incident (a person walking a dog
    overlaps it too little to be turned down)."""
    for other in found:
        if other.label not in reject or other.score < person.score:
            continue
        inter = intersection(person.box, other.box)
        if iou(person.box, other.box) >= REJECT_IOU or inter >= REJECT_COVER * area(person.box):
            return True
    return False

"""A camera's zones and the incidents in them: tracked people in, ``person`` E/R events out.

A counted object whose bottom-centre point has been in a zone for ``inertia`` frames, while the
zone is armed, starts an incident: one ``person`` event (qualifier E) with a JPEG snapshot
handed to the snapshot sink first. The incident lasts while people are seen there and ends with
one ``person`` event (qualifier R) after ``end_after_s`` without anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.events import NEW, RESTORE, Event
from core.ids import new_event_id
from sensors.camera.frames import Frame
from sensors.camera.geometry import bottom_centre, inside_normalised
from sensors.camera.schedule import Schedule
from sensors.camera.snapshots import crop_box, crop_jpeg
from sensors.camera.tracker import Track
from settings.cameras import CameraConfig, ZoneConfig

log = logging.getLogger(__name__)

SnapshotSink = Callable[[str, bytes], Any]


@dataclass
class Incident:
    """People in one zone: from the first counted detection to ``end_after_s`` after the last."""

    event_id: str
    zone: str
    started: float
    last_seen: float
    top_score: float
    detections: int = 1
    tracks: set[int] = field(default_factory=set)


@dataclass
class ZoneState:
    settings: ZoneConfig
    schedule: Schedule
    incident: Incident | None = None


class Incidents:
    """The incidents of one camera's zones. Not thread-safe: the camera's thread owns it.

    ``deliver`` reports each event; ``snapshot(event_id, jpeg)`` is called just before the
    ``person`` E it belongs to. ``now`` (local time) says whether a scheduled zone is armed;
    where ``clock_synced`` is given and false, scheduled zones count as armed.
    """

    def __init__(
        self,
        settings: CameraConfig,
        *,
        deliver: Callable[[Event], None],
        detector_name: str | None = None,
        snapshot: SnapshotSink | None = None,
        now: Callable[[], datetime] = datetime.now,
        clock_synced: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.deliver = deliver
        self.detector_name = detector_name
        self.snapshot = snapshot
        self.now = now
        self.clock_synced = clock_synced
        self.zones = [ZoneState(z, Schedule(z.armed)) for z in settings.effective_zones]
        self._unsynced_logged = False

    @property
    def open_zones(self) -> list[str]:
        """The zones with an incident going on."""
        return [z.settings.name for z in self.zones if z.incident is not None]

    def next_end(self) -> float | None:
        """When the first open incident ends if nobody is seen again (None: none is open)."""
        ends = [z.incident.last_seen for z in self.zones if z.incident is not None]
        return min(ends) + self.settings.end_after_s if ends else None

    def _armed(self, zone: ZoneState) -> bool:
        if zone.schedule.always:
            return True
        if self.clock_synced is not None and not self.clock_synced():
            # No real-time clock and no NTP yet: the hour is unknown, so watch rather than miss.
            if not self._unsynced_logged:
                self._unsynced_logged = True
                log.warning(
                    "camera %s: clock not synchronised; scheduled zones armed", self.settings.name
                )
            return True
        return zone.schedule.armed(self.now())

    def update(self, frame: Frame, matched: list[Track]) -> list[Event]:
        """Count ``matched`` tracks in their zones; the ``person`` E of incidents they start."""
        width, height = frame.size
        events: list[Event] = []
        for zone in self.zones:
            z = zone.settings
            present: list[Track] = []
            for t in matched:
                foot = bottom_centre(t.box)
                there = not z.polygon or inside_normalised(foot, z.polygon, width, height)
                t.zone_frames[z.name] = t.zone_frames.get(z.name, 0) + 1 if there else 0
                if t.confirmed and t.zone_frames[z.name] >= z.inertia:
                    present.append(t)
            if not present:
                continue
            if zone.incident is not None:
                inc = zone.incident
                inc.last_seen = frame.ts
                inc.detections += len(present)
                inc.top_score = max([inc.top_score] + [t.scores[-1] for t in present])
                inc.tracks.update(t.id for t in present)
            elif self._armed(zone):
                events.append(self._start(zone, frame, present))
        return events

    def _start(self, zone: ZoneState, frame: Frame, present: list[Track]) -> Event:
        s = self.settings
        width, height = frame.size
        best = max(present, key=lambda t: t.scores[-1])
        event_id = new_event_id()
        box = tuple(round(v, 1) for v in best.box)
        data: dict[str, Any] = {
            "camera": s.name,
            "zone": zone.settings.name,
            "label": best.label,
            "score": round(best.scores[-1], 3),
            "median_score": round(best.median_score, 3),
            "box": list(box),
            "frame": [width, height],
            "track": best.id,
            "people": len(present),
        }
        if self.detector_name is not None:
            data["detector"] = self.detector_name
        if self.snapshot is not None:
            crop = crop_box(best.box, s.snapshot_margin, width, height)
            try:
                self.snapshot(event_id, crop_jpeg(frame.image, crop, s.snapshot_quality))
            except Exception:
                log.exception("camera %s: snapshot %s not stored", s.name, event_id)
            else:
                data["snapshot"] = f"snapshot/{event_id}"
                data["snapshot_box"] = [int(v) for v in crop]
        zone.incident = Incident(
            event_id=event_id,
            zone=zone.settings.name,
            started=frame.ts,
            last_seen=frame.ts,
            top_score=best.scores[-1],
            detections=len(present),
            tracks={t.id for t in present},
        )
        event = Event(
            kind="person",
            zone=zone.settings.name,
            source=s.name,
            qualifier=NEW,
            data=data,
            id=event_id,
        )
        self.deliver(event)
        return event

    def end_due(self, now: float) -> list[Event]:
        """End the incidents whose zone has been empty for ``end_after_s``: their ``person`` R."""
        events: list[Event] = []
        for zone in self.zones:
            inc = zone.incident
            if inc is None or now - inc.last_seen < self.settings.end_after_s:
                continue
            zone.incident = None
            event = Event(
                kind="person",
                zone=inc.zone,
                source=self.settings.name,
                qualifier=RESTORE,
                data={
                    "camera": self.settings.name,
                    "zone": inc.zone,
                    "incident": inc.event_id,
                    "duration_s": round(inc.last_seen - inc.started, 3),
                    "top_score": round(inc.top_score, 3),
                    "detections": inc.detections,
                    "people": len(inc.tracks),
                },
            )
            self.deliver(event)
            events.append(event)
        return events

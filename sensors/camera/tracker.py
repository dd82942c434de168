"""A small tracker: detections matched to tracked objects by box overlap (IoU), frame by frame.

A tracked object is believed (``confirmed``) once it has been detected in ``min_frames``
frames, and for as long as the median of its last ``history`` scores reaches ``threshold``: a
person who walks away and leaves a weak false detection where they stood (a post, a shadow) is
not kept alive by it. An object is lost after ``max_misses`` frames in which the
detector looked where it was and did not find it (frames where the detector did not look there,
because nothing moved, do not count against it).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sensors.camera.geometry import Box, iou, overlaps
from settings.cameras import FilterConfig


@dataclass(frozen=True)
class Seen:
    """One detection that passed the per-detection filters (full-frame pixels)."""

    label: str
    score: float
    box: Box


@dataclass
class Track:
    id: int
    label: str
    box: Box
    first_ts: float
    last_ts: float
    scores: deque[float]
    hits: int = 1
    misses: int = 0
    top_score: float = 0.0
    confirmed: bool = False
    matched: bool = True  # detected in the latest frame
    zone_frames: dict[str, int] = field(default_factory=dict)  # consecutive frames per zone

    @property
    def median_score(self) -> float:
        return float(statistics.median(self.scores))


class Tracker:
    """Not thread-safe: the camera's thread owns it."""

    def __init__(
        self, filters: FilterConfig, *, match_iou: float = 0.1, max_misses: int = 5
    ) -> None:
        self.filters = filters
        self.match_iou = match_iou
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, seen: Sequence[Seen], looked: Sequence[Box], ts: float) -> list[Track]:
        """Match this frame's detections; ``looked`` are the regions the detector ran on.

        Returns the tracks detected in this frame (new or matched).
        """
        for t in self.tracks:
            t.matched = False
        pairs = sorted(
            (
                (iou(t.box, d.box), ti, di)
                for ti, t in enumerate(self.tracks)
                for di, d in enumerate(seen)
                if t.label == d.label
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        for score, ti, di in pairs:
            if score < self.match_iou:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self._hit(self.tracks[ti], seen[di], ts)
        for di, d in enumerate(seen):
            if di not in used_d:
                track = Track(
                    id=self._next_id,
                    label=d.label,
                    box=d.box,
                    first_ts=ts,
                    last_ts=ts,
                    scores=deque([d.score], maxlen=self.filters.history),
                    top_score=d.score,
                )
                self._next_id += 1
                self._judge(track)
                self.tracks.append(track)
        kept: list[Track] = []
        for t in self.tracks:
            if not t.matched and any(overlaps(t.box, r) for r in looked):
                t.misses += 1
            if t.misses <= self.max_misses:
                kept.append(t)
        self.tracks = kept
        return [t for t in self.tracks if t.matched]

    def _hit(self, track: Track, d: Seen, ts: float) -> None:
        track.box = d.box
        track.last_ts = ts
        track.scores.append(d.score)
        track.hits += 1
        track.misses = 0
        track.top_score = max(track.top_score, d.score)
        track.matched = True
        self._judge(track)

    def _judge(self, track: Track) -> None:
        f = self.filters
        track.confirmed = track.hits >= f.min_frames and track.median_score >= f.threshold

    def clear(self) -> None:
        self.tracks.clear()

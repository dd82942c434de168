"""Snapshots: a JPEG crop around the person that started an incident, kept under a size cap.

``crop_jpeg`` makes the picture with OpenCV's encoder (the camera path has OpenCV loaded
already; Pillow would add 3 MB to the hub from the first snapshot on). ``SnapshotStore`` keeps
one file per event, ``<dir>/<event-id>.jpg``, and deletes the oldest files once the folder
holds more than ``max_bytes``. A store's ``put`` fits the pipeline's ``snapshot`` sink.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sensors.camera.geometry import Box, clamp_box

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def crop_box(box: Box, margin: float, width: int, height: int, min_side: int = 64) -> Box:
    """``box`` grown by ``margin`` of its size on each side (at least ``min_side`` pixels),
    inside a ``width`` x ``height`` frame, in whole pixels."""
    w, h = box[2] - box[0], box[3] - box[1]
    grow_w = max(w * margin, (min_side - w) / 2.0, 0.0)
    grow_h = max(h * margin, (min_side - h) / 2.0, 0.0)
    x0, y0, x1, y1 = clamp_box(
        (box[0] - grow_w, box[1] - grow_h, box[2] + grow_w, box[3] + grow_h), width, height
    )
    return (float(int(x0)), float(int(y0)), float(-int(-x1)), float(-int(-y1)))


def crop_jpeg(rgb: np.ndarray, crop: Box, quality: int = 85) -> bytes:
    """The ``crop`` region of an RGB frame as JPEG bytes."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in crop)
    part = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    ok, encoded = cv2.imencode(".jpg", part, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode a {part.shape[1]}x{part.shape[0]} crop as JPEG")
    return encoded.tobytes()


class SnapshotStore:
    """A folder of ``<event-id>.jpg`` files holding at most ``max_bytes`` in all.

    Thread-safe: several cameras may ``put`` at once. Files are written whole (a temporary file
    renamed into place), so a reader never sees half a picture.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 50_000_000) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, event_id: str) -> Path:
        if not _SAFE_ID.match(event_id):
            raise ValueError(f"not a usable event id for a file name: {event_id!r}")
        return self.dir / f"{event_id}.jpg"

    def put(self, event_id: str, jpeg: bytes) -> Path:
        """Store the snapshot of ``event_id`` and prune the oldest beyond the cap."""
        target = self.path(event_id)
        tmp = target.with_suffix(".tmp")
        with self._lock:
            tmp.write_bytes(jpeg)
            os.replace(tmp, target)
            self._prune(keep=target)
        return target

    def get(self, event_id: str) -> bytes | None:
        try:
            return self.path(event_id).read_bytes()
        except FileNotFoundError:
            return None

    def total_bytes(self) -> int:
        return sum(size for _, _, size in self._files())

    def _files(self) -> list[tuple[float, Path, int]]:
        out = []
        for entry in os.scandir(self.dir):
            if entry.name.endswith(".jpg") and entry.is_file():
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, Path(entry.path), st.st_size))
        return out

    def _prune(self, keep: Path) -> None:
        files = self._files()
        total = sum(size for _, _, size in files)
        # Oldest first: by time written, then by name (event ids sort by creation time).
        for _, path, size in sorted(files, key=lambda f: (f[0], f[1].name)):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            try:
                path.unlink()
                total -= size
            except FileNotFoundError:
                pass
            log.debug("snapshot %s deleted: the folder is over %d bytes", path.name, self.max_bytes)

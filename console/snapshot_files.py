"""The camera snapshots the receiver saved, ``<data_dir>/snapshots/<hub>/<event-id>.jpg``.

A request names a hub and an event id; each must match the pattern the receiver saves under
(``commune.snapshots``), and the resolved file must still lie inside the snapshots directory
(no ``..``, no symbolic link out of it), be a regular file and start like a JPEG. Anything else
is "no picture".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from commune.snapshots import HUB_ID, SNAPSHOT_DIRNAME, SNAPSHOT_ID

JPEG_START = b"\xff\xd8\xff"


def snapshot_file(data_dir: Path, hub: str, event_id: str) -> Path | None:
    if not HUB_ID.fullmatch(hub) or not SNAPSHOT_ID.fullmatch(event_id):
        return None
    if event_id in (".", "..") or ".." in event_id:
        return None
    root = (data_dir / SNAPSHOT_DIRNAME).resolve()
    try:
        path = (root / hub / f"{event_id}.jpg").resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            if fh.read(3) != JPEG_START:
                return None
    except OSError:
        return None
    return path


def snapshot_ref(event: dict[str, Any]) -> str | None:
    """The event id a snapshot of this event is stored under: a ``person`` event's own id
    (its ``data.snapshot`` is ``snapshot/<id>``), else None."""
    data = event.get("data")
    ref = data.get("snapshot") if isinstance(data, dict) else None
    if isinstance(ref, str) and ref.startswith("snapshot/"):
        found = ref.split("/", 1)[1]
        return found if SNAPSHOT_ID.fullmatch(found) else None
    if event.get("kind") == "person" and isinstance(event.get("id"), str):
        return str(event["id"])
    return None

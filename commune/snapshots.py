"""Camera snapshots on the receiver's disk: ``snapshots/<hub>/<event-id>.jpg`` beside its
database, or ``snapshots/<commune>/<hub>/<event-id>.jpg`` for a receiver of several communes
(hub ids are unique within a commune only). A message that is not a whole JPEG of a hub of one
of its communes, or is larger than ``MAX_SNAPSHOT_BYTES``, is refused with the reason."""

from __future__ import annotations

import re
from pathlib import Path

from commune.scope import CommuneScope
from core.files import write_durably
from core.topics import parse_hub_topic

SNAPSHOT_DIRNAME = "snapshots"  # beside the database: snapshots/[<commune>/]<hub>/<event-id>.jpg
MAX_SNAPSHOT_BYTES = 4_000_000  # a hub's snapshot is a crop of tens of kilobytes
SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HUB_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def is_snapshot(topic: str) -> bool:
    parts = parse_hub_topic(topic)
    return parts is not None and parts[2].startswith("snapshot/")


def is_jpeg(data: bytes) -> bool:
    """A whole JPEG: it starts with SOI and an FF marker, and ends with EOI (some cameras pad
    the end; a few bytes after EOI are allowed)."""
    return len(data) > 4 and data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" in data[-32:]


class SnapshotFiles:
    def __init__(self, directory: Path, communes: str | CommuneScope) -> None:
        self.directory = directory
        self.scope = CommuneScope.of(communes)
        self.per_commune = self.scope.single is None  # one folder per commune

    def problem(self, topic: str, payload: bytes) -> str | None:
        """Why this snapshot message is refused, or None."""
        parts = parse_hub_topic(topic)
        if parts is None:
            return "topic outside tuquan/v1/<commune>/<hub>/"
        commune, hub, rest = parts
        event_id = rest.split("/", 1)[1]
        if not self.scope.accepts(commune):
            return f"topic of commune {commune[:64]!r}, not {self.scope.label!r}"
        if not HUB_ID.fullmatch(hub):
            return "the hub in the topic is not a hub id"
        if not SNAPSHOT_ID.fullmatch(event_id):
            return "the last topic level is not an event id"
        if len(payload) > MAX_SNAPSHOT_BYTES:
            return f"larger than {MAX_SNAPSHOT_BYTES} bytes"
        if not is_jpeg(payload):
            return "not a JPEG"
        return None

    def save(self, topic: str, payload: bytes) -> Path:
        """Write a snapshot ``problem`` found nothing wrong with, whole; OSError if it cannot."""
        parts = parse_hub_topic(topic)
        assert parts is not None
        commune, hub, event_id = parts[0], parts[1], parts[2].split("/", 1)[1]
        folder = self.directory / commune if self.per_commune else self.directory
        path = folder / hub / f"{event_id}.jpg"
        write_durably(path, payload)
        return path

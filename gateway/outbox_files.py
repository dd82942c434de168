"""The files around the outbox that let it survive its own file: a sequence record that
outlives a damaged database, moving a damaged file aside, and saving what it still holds.

Everything here runs on the store thread (gateway/guarded_outbox.py) and never deletes a file.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.files import write_durably

log = logging.getLogger(__name__)

SEQ_BLOCK = 1000  # seq numbers reserved ahead of use: one small fsync'd write per block
_SALVAGE_CHUNK = 256  # rows read per range query when a whole-table scan fails
_SALVAGE_MAX_CHUNKS = 4000  # ~1M seqs: a corrupt max(seq) must not make salvage endless
_SIDE_FILES = ("-wal", "-shm")


class SeqRecord:
    """``outbox.seq``: the highest seq the hub may have given out, kept beside the outbox.

    Seq numbers are reserved in blocks ahead of use, so this file is written once per
    ``SEQ_BLOCK`` events, not once per event, and topped up once half a block is used, so
    the write is rarely on an alarm's path. When the outbox file is damaged, emptied or lost,
    or the hub did not stop cleanly, numbering resumes after the reserved block: a seq that
    may have been published (an alarm goes out while its commit is in flight) is never given
    to another event. The gap is "reserved, never used" (docs/operations.md). A clean stop
    gives the unused rest of the block back (``release``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.reserved = 0
        self.problem: str | None = None  # why the record could not be read, if it could not

    def load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self.problem = f"cannot read {self.path.name}: {exc}"
            return 0
        if not text.isdigit() or len(text) > 19:
            self.problem = f"{self.path.name} holds {text[:40]!r}, not a sequence number"
            return 0
        self.reserved = int(text)
        return self.reserved

    def reserve_through(self, seq: int) -> bool:
        """Make sure every seq up to ``seq`` is covered; writes a new block when it is not.
        False if the record could not be written (a full disk): numbering goes on regardless."""
        if seq <= self.reserved - SEQ_BLOCK // 2:
            return True
        target = seq + SEQ_BLOCK
        try:
            write_durably(self.path, f"{target}\n".encode())
        except OSError as exc:
            log.warning("could not reserve seq numbers in %s: %s", self.path, exc)
            return False
        self.reserved = target
        return True

    def release(self, last_used: int) -> None:
        """A clean stop, every seq given out committed: the next start goes on from
        ``last_used``, with no gap."""
        if last_used >= self.reserved:
            return
        try:
            write_durably(self.path, f"{last_used}\n".encode())
        except OSError as exc:
            log.warning("could not release the unused seq numbers in %s: %s", self.path, exc)
            return
        self.reserved = last_used


def quarantine(path: Path) -> Path | None:
    """Move ``path`` (and its -wal and -shm) aside as ``<name>.damaged-<UTC time>``.

    Returns the new path of the main file, or None if there was no file. Raises OSError if
    the file cannot be renamed (then it cannot be replaced either)."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in _SIDE_FILES:  # the WAL first: it belongs to the main file
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    os.replace(path, target)
    return target


@dataclass
class Salvage:
    """What could still be read from a damaged outbox file."""

    max_seq: int = 0
    rows: list[tuple[int, str, str, int, int, bytes]] = field(default_factory=list)
    errors: int = 0  # queries that failed (damaged pages skipped)


def salvage(path: Path, hub: str) -> Salvage:
    """Read the highest seq and the undelivered rows a damaged file still yields.

    Best effort and bounded: a whole-table scan first, then range queries by seq skipping the
    ranges that fail. A row is kept only if its payload is the event it claims to be (the JSON
    parses, and its id, seq and hub match the row), so damaged bytes never go out as an event.
    """
    out = Salvage()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        out.errors += 1
        return out
    try:
        for sql in ("SELECT value FROM meta WHERE key='last_seq'", "SELECT max(seq) FROM outbox"):
            try:
                value = conn.execute(sql).fetchone()
                if value and isinstance(value[0], int):
                    out.max_seq = max(out.max_seq, value[0])
            except sqlite3.Error:
                out.errors += 1
        select = "SELECT seq, id, kind, priority, state, payload FROM outbox WHERE state<2"
        try:
            found = conn.execute(select + " ORDER BY seq").fetchall()
        except sqlite3.Error:
            out.errors += 1
            found = []
            for chunk in range(min(out.max_seq // _SALVAGE_CHUNK + 1, _SALVAGE_MAX_CHUNKS)):
                low = chunk * _SALVAGE_CHUNK
                try:
                    found += conn.execute(
                        select + " AND seq > ? AND seq <= ?", (low, low + _SALVAGE_CHUNK)
                    ).fetchall()
                except sqlite3.Error:
                    out.errors += 1
        out.rows = [r for r in found if _genuine(r, hub)]
        if out.rows:
            out.max_seq = max(out.max_seq, out.rows[-1][0], max(r[0] for r in out.rows))
    finally:
        conn.close()
    return out


def _genuine(row: tuple[object, ...], hub: str) -> bool:
    seq, event_id, kind, priority, state, payload = row
    if not isinstance(payload, bytes | str) or not isinstance(seq, int):
        return False
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(obj, dict)
        and obj.get("id") == event_id
        and obj.get("seq") == seq
        and obj.get("hub") == hub
        and obj.get("kind") == kind
        and isinstance(priority, int)
        and state in (0, 1)
    )

"""What a storage error of the outbox is: a fault of the file itself (moved aside) or of the disk
under it (retried), the name it is reported by, and the outbox's storage health."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from core.errors import TuquanError
from gateway.outbox import OutboxDamaged

_DAMAGED_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_REASONS = {13: "full", 8: "read-only", 10: "io-error", 14: "cannot-open", 3: "no-permission"}


class StorageRefused(TuquanError):
    """The disk refuses writes and this event is not one the hub keeps in memory."""


@dataclass
class StorageHealth:
    state: str = "ok"  # ok | full | read-only | io-error | cannot-open | ...
    since: float = 0.0  # wall time the state began
    error: str | None = None
    refused: int = 0  # telemetry/detections refused while the disk refused writes
    quarantined: list[str] | None = None  # damaged files moved aside by this run
    write_errors: int = 0  # state changes (sent, delivered) that could not be written


def is_damage(exc: BaseException) -> bool:
    """A fault of the file itself (moved aside), not of the disk under it (retried)."""
    if isinstance(exc, OutboxDamaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGED_CODES:
        return True
    text = str(exc)
    if "malformed" in text or "not a database" in text:
        return True
    # Operational errors (full, locked, I/O) are the disk's; an integrity error on our own
    # numbering means the file does not hold what it should.
    return not isinstance(exc, sqlite3.OperationalError)


def reason_of(exc: BaseException) -> str:
    """The state the storage is reported in after ``exc``."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return _REASONS.get(code & 0xFF, "write-error")
    if isinstance(exc, OSError):
        return {28: "full", 30: "read-only", 13: "no-permission"}.get(exc.errno or 0, "io-error")
    return "write-error"

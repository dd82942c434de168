"""The hub's memory of the command counters it has accepted: what makes each signed command run
once, even across restarts (``<hub data dir>/commands.sqlite3``).

Per signer (the commune key's fingerprint: a new commune key starts a new count) it keeps the
highest counter accepted and the counters accepted within ``WINDOW`` below it. A counter at or
below ``highest - WINDOW``, or one already seen, is refused; any other is recorded *before* the
command runs (a crash then loses a command rather than running it twice). The window lets a
few commands arrive out of order.

A damaged file is moved aside (``commands.sqlite3.damaged-<UTC time>``, as the outbox does) and
logged; the highest counters it still yields are carried into the new file, with the whole
window below them counted as seen, so only counters above them are accepted. If nothing can
be read from it, the hub starts from nothing and says so: until then, a genuine command
captured earlier could be replayed while it has not expired.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

from gateway.outbox_files import quarantine

log = logging.getLogger(__name__)

REPLAY_FILE = "commands.sqlite3"
WINDOW = 64
MAX_COUNTER = 2**63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS highest (signer TEXT PRIMARY KEY, counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    signer TEXT NOT NULL, counter INTEGER NOT NULL, PRIMARY KEY (signer, counter)
) WITHOUT ROWID;
"""


class ReplayWindow:
    """Thread-safe; each ``admit`` is one durable transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            log.error("command counter file %s is damaged (%s): moving it aside", self.path, exc)
        carried = salvage_highest(self.path)
        moved = quarantine(self.path)
        log.error(
            "moved the damaged %s to %s; %s",
            self.path.name,
            moved,
            f"accepting only counters above {carried}"
            if carried
            else "nothing could be read from it: starting a new count, and until the commune's"
            " next command a replay of an earlier, unexpired one would not be noticed",
        )
        db = self._connect()
        with db:
            for signer, counter in carried.items():
                db.execute("INSERT INTO highest VALUES (?, ?)", (signer, counter))
                db.executemany(
                    "INSERT INTO seen VALUES (?, ?)",
                    [(signer, c) for c in range(max(1, counter - WINDOW + 1), counter + 1)],
                )
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def highest(self, signer: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT counter FROM highest WHERE signer = ?", (signer,)
            ).fetchone()
        return int(row[0]) if row else 0

    def admit(self, signer: str, counter: int) -> str | None:
        """Record ``counter`` and return None, or say why it is refused (nothing recorded)."""
        if (
            isinstance(counter, bool)
            or not isinstance(counter, int)
            or not 0 < counter <= MAX_COUNTER
        ):
            return "counter must be a positive integer"
        with self._lock:
            try:
                return self._admit(signer, counter)
            except sqlite3.DatabaseError as exc:
                log.error("command counter file %s failed (%s)", self.path, exc)
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = self._open()
                return "the hub's command counter file failed; send the command again"

    def _admit(self, signer: str, counter: int) -> str | None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT counter FROM highest WHERE signer = ?", (signer,)).fetchone()
            highest = int(row[0]) if row else 0
            if counter <= highest - WINDOW:
                db.execute("ROLLBACK")
                return (
                    f"counter {counter} is too old: the highest seen is {highest}"
                    f" (only the {WINDOW} below it are still accepted)"
                )
            if db.execute(
                "SELECT 1 FROM seen WHERE signer = ? AND counter = ?", (signer, counter)
            ).fetchone():
                db.execute("ROLLBACK")
                return f"counter {counter} was already used: a replayed command"
            db.execute("INSERT INTO seen VALUES (?, ?)", (signer, counter))
            if counter > highest:
                db.execute(
                    "INSERT INTO highest VALUES (?, ?) ON CONFLICT (signer)"
                    " DO UPDATE SET counter = excluded.counter",
                    (signer, counter),
                )
                db.execute(
                    "DELETE FROM seen WHERE signer = ? AND counter <= ?",
                    (signer, counter - WINDOW),
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return None

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()


def salvage_highest(path: Path) -> dict[str, int]:
    """The highest counters a damaged file still yields, per signer (empty if none)."""
    found: dict[str, int] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    try:
        for query in (
            "SELECT signer, counter FROM highest",
            "SELECT signer, max(counter) FROM seen GROUP BY signer",
        ):
            with contextlib.suppress(sqlite3.Error):
                for signer, counter in db.execute(query):
                    if isinstance(signer, str) and isinstance(counter, int) and counter > 0:
                        found[signer] = max(found.get(signer, 0), min(counter, MAX_COUNTER))
    finally:
        db.close()
    return found

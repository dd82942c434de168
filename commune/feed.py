"""The alert feed: every stored event handed to a callback at least once, in store order.

The feed reads the store, not the messages: after each commit it takes the rows stored since
its position (the ``events`` rowid of the last row it handed on, kept in the store's ``meta``
table), calls the callback for each, then records the new position. A crash after a call and
before the position is recorded hands those rows on again at the next start; no crash can skip
one, because a row is committed before the feed can see it. So consumers key on ``id``.

Runs on the receiver's writer thread, which owns the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from commune.store import EventStore, ReceivedEvent
from core.safe_json import loads_untrusted

log = logging.getLogger(__name__)

FEED_BATCH = 500  # rows read per query while catching up
_STORED_PAYLOAD_BYTES = 16 * 1024 * 1024  # rows from older receivers were stored unbounded
CONTRACT_FIELDS = (
    "id",
    "hub",
    "seq",
    "kind",
    "priority",
    "zone",
    "source",
    "ts",
    "clock_synced",
    "cid",
    "qualifier",
    "data",
)


def feed_event(row: dict[str, Any]) -> dict[str, Any]:
    """The event as the hub published it (the stored payload, so fields a newer hub added are
    kept), with the contract's fields as stored (``priority`` and ``cid`` the ones the store
    used, ``seq`` an int)."""
    try:
        published = loads_untrusted(row["payload"], max_bytes=_STORED_PAYLOAD_BYTES)
    except ValueError:
        published = None
    base = published if isinstance(published, dict) else {}
    shown = base | {name: row[name] for name in CONTRACT_FIELDS}
    # Absent when nothing was verified (no hub enrolled), as before there were signatures.
    if row.get("verified") is not None:
        shown["verified"] = bool(row["verified"])
    return shown


def unverified_event(event: ReceivedEvent, reason: str) -> dict[str, Any]:
    """A quarantined event as the feed shows it: never a genuine alarm, ``verified`` false and
    the quarantine's reason."""
    return feed_event(asdict(event)) | {"verified": False, "reason": reason}


class AlertFeed:
    """Hands rows stored after the recorded position to ``callback(event_dict)``.

    An exception from the callback is logged (once per catch-up) and the row counts as handed
    on: the callback is the consumer's, and a consumer that always fails must not stop the
    receiver."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.callback = callback
        self._position: int | None = None  # read from the store on the first catch-up

    def catch_up(self, store: EventStore) -> int:
        """Hand on every row not yet handed on; the number of rows."""
        if self._position is None:
            self._position = store.feed_position()
        handed = 0
        failed: list[str] = []
        while True:
            rows = store.rows_after(self._position, FEED_BATCH)
            if not rows:
                break
            for _, row in rows:
                try:
                    self.callback(feed_event(row))
                except Exception as exc:
                    if not failed:
                        log.error("alert feed callback failed for event %s: %r", row["id"], exc)
                    failed.append(row["id"])
            self._position = rows[-1][0]
            handed += len(rows)
            try:
                store.set_feed_position(self._position)
            except Exception as exc:
                # Kept in memory; written with the next batch. A restart meanwhile repeats lines.
                log.warning("alert feed position %d not saved: %s", self._position, exc)
        if len(failed) > 1:
            log.error("alert feed callback failed for %d events in all", len(failed))
        return handed
